"""The dashboard's JSON API: each handler asks one controller, as a CLI command does,
and returns plain data. Reads only, except tags and messages (nothing is deleted here).

Handlers take the project and the request's arguments (a werkzeug MultiDict) and raise
datmo's own errors, which the app turns into a JSON error with the CLI's one line.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from typing import Any

from werkzeug.datastructures import MultiDict

from datmo.core.controller import compare as comparing
from datmo.core.controller import files, series, tags
from datmo.core.controller import run as runs
from datmo.core.controller import snapshot as snapshots
from datmo.core.controller import sweep as sweeps
from datmo.core.entity.run import Run
from datmo.core.storage import runs as records
from datmo.core.storage.project import ProjectContext
from datmo.errors import DatmoError, UsageError

Args = MultiDict[str, str]
PAGE_MAX = 500
COMPARE_MAX = 100
LOG_CHUNK = 256 * 1024


def _int(args: Args, name: str, default: int, low: int, high: int) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"'{name}' must be a whole number, not '{raw}'") from None
    return max(low, min(high, value))


def _float(args: Args, name: str) -> float | None:
    raw = args.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"'{name}' must be a number, not '{raw}'") from None
    return value if math.isfinite(value) else None


def row(run: Run) -> dict[str, Any]:
    """What the runs table shows of a run."""
    return {
        "id": run.id,
        "status": run.status,
        "created_at": run.created_at,
        "command": run.command,
        "message": run.message,
        "tags": run.tags,
        "duration_s": run.duration_s,
        "sweep_id": run.sweep_id,
        "config": run.config,
        "metrics": run.metrics,
    }


def run_list(ctx: ProjectContext, args: Args) -> dict[str, Any]:
    """A page of runs by `datmo ls --filter/--sort`; with count=1, how many the filter
    selects too (the page asks for that apart, so its rows are drawn first)."""
    limit = _int(args, "limit", 50, 1, PAGE_MAX)
    offset = _int(args, "offset", 0, 0, 10**9)
    found = runs.listing(
        ctx,
        args.get("filter") or None,
        args.get("sort") or None,
        limit,
        args.get("sweep") or None,
        offset=offset,
        total=args.get("count") == "1",
    )
    return {
        "runs": [row(r) for r in found.runs],
        "total": found.total,
        "offset": offset,
        "damaged": found.damaged,
        "unknown": found.unknown,
    }


def run_keys(ctx: ProjectContext, args: Args) -> dict[str, list[str]]:
    """Config and metric keys for columns; a series' KEY.min and KEY.max left out."""
    found = runs.keys(ctx)
    have = set(found["metrics"])
    found["metrics"] = [
        k for k in found["metrics"] if not (k.endswith((".min", ".max")) and k[:-4] in have)
    ]
    return found


def run_get(ctx: ProjectContext, args: Args, run_id: str) -> dict[str, Any]:
    run = runs.get(ctx, run_id)
    doc = run.to_dict()
    snaps = {}
    for sid in (run.before_snapshot_id, run.after_snapshot_id):
        if sid:
            snap = snapshots.get(ctx, sid)
            snaps[sid] = {"id": snap.id, "message": snap.message, "created_at": snap.created_at}
    doc["snapshots"] = snaps
    doc["series"] = sorted(series.chosen(ctx, run))
    return doc


def run_log(ctx: ProjectContext, args: Args, run_id: str) -> dict[str, Any]:
    """The run's output from a byte offset on (a page follows a RUNNING run's log)."""
    run = runs.get(ctx, run_id)
    offset = _int(args, "offset", 0, 0, 2**62)
    path = records.log_path(ctx.store, run.id)
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if offset > size:
                offset = 0
            if not args.get("offset") and size > LOG_CHUNK:
                offset = size - LOG_CHUNK  # first look: the end of a long log
            f.seek(offset)
            data = f.read(LOG_CHUNK)
    except FileNotFoundError:
        data, size = b"", 0
    return {
        "text": data.decode("utf-8", "replace"),
        "offset": offset + len(data),
        "size": size,
        "status": run.status,
    }


def series_views(ctx: ProjectContext, args: Args) -> bytes:
    """A metric's points of one or more runs, at the detail of a chart `width` wide, in
    one binary answer (framed): a JSON head {key, axis, series: [{run, status, total,
    shown, level, n, xi?}]}, then each series' points as View.wire gives them."""
    ids = args.getlist("run")
    key = args.get("key") or ""
    if not ids or not key:
        raise UsageError("name one or more runs (run=ID) and a metric (key=NAME)")
    if len(ids) > COMPARE_MAX:
        raise UsageError(f"at most {COMPARE_MAX} runs can be drawn together")
    axis = args.get("axis", "step")
    lo, hi = _float(args, "lo"), _float(args, "hi")
    width = _int(args, "width", 800, 10, 10_000)
    found = [runs.get(ctx, rid) for rid in ids]
    views = series.windows(ctx, found, key, axis, lo, hi, width)
    head, parts = [], []
    for run, view in zip(found, views, strict=True):
        meta, data = view.wire()
        head.append({"run": run.id, "status": run.status, **meta})
        parts.append(data)
    return framed({"key": key, "axis": axis, "series": head}, parts)


def framed(head: dict[str, Any], parts: list[bytes]) -> bytes:
    """A JSON head and binary parts in one body: the head's length (4 bytes, little-endian),
    the head padded with spaces so that the parts start at a multiple of 8 bytes (where a
    Float64Array may begin), then the parts. A browser reads the numbers in place: no
    text to parse, no base64 to decode (issue 15)."""
    text = json.dumps(head, allow_nan=False, separators=(",", ":")).encode()
    text += b" " * (-(4 + len(text)) % 8)
    return b"".join([struct.pack("<I", len(text)), text, *parts])


def compare_runs(ctx: ProjectContext, args: Args) -> dict[str, Any]:
    """Config and metrics of 2..100 runs side by side, with the keys whose values differ."""
    ids = [i for i in args.getlist("run") if i]
    if not 2 <= len(ids) <= COMPARE_MAX:
        raise UsageError(f"select 2 to {COMPARE_MAX} runs to compare")
    found = [runs.get(ctx, i) for i in ids]
    out: dict[str, Any] = {"runs": [row(r) for r in found]}
    for part in ("config", "metrics"):
        keys = sorted({k for r in found for k in getattr(r, part)})
        out[f"{part}_keys"] = keys
        out[f"{part}_differ"] = [
            k for k in keys if len({repr(getattr(r, part).get(k)) for r in found}) > 1
        ]
    out["series"] = sorted({k for r in found for k in r.metrics})
    return out


def snapshot_diff(ctx: ProjectContext, args: Args) -> dict[str, Any]:
    """What `snapshot diff -p` shows for two snapshots (or two runs' after snapshots)."""
    a, b = _snapshot_of(ctx, args.get("a", "")), _snapshot_of(ctx, args.get("b", ""))
    found = comparing.diff(ctx, a, b).to_dict()
    text = comparing.code_diff(ctx, a, b)
    found["patch"] = text[:2_000_000]
    found["patch_cut"] = len(text) > 2_000_000
    return found


def _snapshot_of(ctx: ProjectContext, ref: str) -> str:
    """A snapshot by any of its names, or a run's after (else before) snapshot."""
    if not ref:
        raise UsageError("name two snapshots or runs to compare (a=..., b=...)")
    try:
        return snapshots.get(ctx, ref).id
    except DatmoError:
        run = runs.get(ctx, ref)
        sid = run.after_snapshot_id or run.before_snapshot_id
        if not sid:
            raise UsageError(f"run {run.id[:8]} has no snapshot yet") from None
        return sid


def snapshot_list(ctx: ProjectContext, args: Args) -> dict[str, Any]:
    everything = args.get("all") == "1"
    found = snapshots.ls(ctx, all=everything)
    keep = ("id", "created_at", "message", "label", "tags", "config", "metrics", "run_id")
    return {"snapshots": [{k: getattr(s, k) for k in keep} for s in found]}


def snapshot_files(ctx: ProjectContext, args: Args, ref: str) -> dict[str, Any]:
    snap = snapshots.get(ctx, ref)
    return {"snapshot": snap.id, "files": files.listing(ctx, snap.id)}


def sweep_list(ctx: ProjectContext, args: Args) -> dict[str, Any]:
    found = sweeps.ls(ctx)
    keep = ("id", "created_at", "command", "space", "search", "objective", "stopped_at")
    return {"sweeps": [{k: getattr(s, k) for k in keep} for s in found]}


def sweep_get(ctx: ProjectContext, args: Args, ref: str) -> dict[str, Any]:
    """A sweep with its runs ranked by its objective (best first; unranked after)."""
    sweep = sweeps.get(ctx, ref)
    found = sweeps.runs_of(ctx, sweep)
    ranked = sweeps.ranked(sweep, found)
    rest = [r for r in found if r is not None and r not in ranked]
    return {
        "sweep": sweep.to_dict(),
        "runs": [row(r) for r in [*ranked, *rest]],
        "ranked": len(ranked),
        "keys": sorted(sweep.space),
    }


# -- edits: tags and messages only --------------------------------------------------


def edit_tags(ctx: ProjectContext, body: dict[str, Any], ref: str) -> dict[str, Any]:
    add, remove = body.get("add") or [], body.get("remove") or []
    if not isinstance(add, list) or not isinstance(remove, list):
        raise UsageError("add and remove are lists of tags")
    target = tags.change(ctx, ref, [str(t) for t in add], [str(t) for t in remove])
    return {"id": target.id, "tags": target.tags}


def edit_message(ctx: ProjectContext, body: dict[str, Any], ref: str, kind: str) -> dict[str, Any]:
    message = body.get("message")
    if not isinstance(message, str):
        raise UsageError("give the new message as text")
    if kind == "run":
        done: Any = runs.describe(ctx, ref, message)
    else:
        done = snapshots.update(ctx, ref, message=message)
    return {"id": done.id, "message": done.message}


Handler = Callable[..., Any]
