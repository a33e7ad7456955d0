"""`datmo rerun --verify`: does the rerun reproduce the original?

It compares the rerun's after snapshot with the original's, never the working tree:
every metric of the two records, and every file the original run created, changed or
removed (its before and after snapshots say which); `--ignore GLOB` leaves files out,
`--rtol X` lets numbers differ by a relative tolerance. The run's own log is not a file
of the tree, so it is never compared.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import Any

from datmo.core.controller import run as runs
from datmo.core.controller import snapshot as snapshots
from datmo.core.controller.checkout import state_of
from datmo.core.entity.run import Run
from datmo.core.storage.project import ProjectContext
from datmo.core.tree.state import TreeState, compare, same_content
from datmo.errors import DatmoError


@dataclass
class Report:
    """Each output compared: kind (file or metric), name, both values, same, how."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return all(r["same"] for r in self.rows)

    def differing(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if not r["same"]]

    def summary(self) -> str:
        differ = self.differing()
        files = sum(r["kind"] == "file" for r in self.rows)
        metrics = len(self.rows) - files
        counted = f"{files} file(s) and {metrics} metric(s)"
        if not differ:
            return f"reproduced: the {counted} compared are the same"
        names = ", ".join(r["name"] for r in differ[:5]) + (" ..." if len(differ) > 5 else "")
        return f"{len(differ)} of the {counted} compared differ from the original: {names}"

    def to_dict(self) -> dict[str, Any]:
        return {"identical": self.identical, "rows": self.rows, "ignored": self.ignored}


def failed(original: Run, rerun: Run) -> bool:
    """Whether the rerun itself failed, rather than reproduced the original's ending."""
    if rerun.status == "SUCCESS":
        return False
    return (rerun.status, rerun.exit_code) != (original.status, original.exit_code)


def verify(
    ctx: ProjectContext,
    original: str,
    rerun_id: str,
    ignore: tuple[str, ...] = (),
    rtol: float = 0.0,
) -> Report:
    a, b = runs.get(ctx, original), runs.get(ctx, rerun_id)
    if not (a.before_snapshot_id and a.after_snapshot_id and b.after_snapshot_id):
        raise DatmoError("both runs need their after snapshots (and the original its before)")
    if rtol < 0 or not math.isfinite(rtol):
        raise DatmoError(f"--rtol {rtol} must be a number of 0 or more, such as 1e-6")
    before = state_of(ctx, snapshots.get(ctx, a.before_snapshot_id))
    old = state_of(ctx, snapshots.get(ctx, a.after_snapshot_id))
    new = state_of(ctx, snapshots.get(ctx, b.after_snapshot_id))
    same = same_content(ctx.store)  # code then, a file now: the same bytes are the same
    made = compare(before.signatures(), old.signatures(), same)
    report = Report()
    sig_old, sig_new = old.signatures(), new.signatures()
    for path in sorted({*made.added, *made.changed, *made.removed}):
        if any(fnmatch.fnmatchcase(path, g) for g in ignore):
            report.ignored.append(path)
            continue
        x, y = sig_old.get(path), sig_new.get(path)
        report.rows.append(
            {
                "kind": "file",
                "name": path,
                "original": _describe(ctx, old, path),
                "rerun": _describe(ctx, new, path),
                "same": x == y or (x is not None and y is not None and same(x, y)),
            }
        )
    for key in sorted(a.metrics.keys() | b.metrics.keys()):
        x, y = a.metrics.get(key), b.metrics.get(key)
        row = {"kind": "metric", "name": key, "original": x, "rerun": y, "same": _close(x, y, rtol)}
        if not row["same"] and _number(x) and _number(y):
            row["difference"] = _relative(x, y)
        report.rows.append(row)
    return report


def _number(v: Any) -> bool:
    return type(v) in (int, float)


def _close(x: Any, y: Any, rtol: float) -> bool:
    if _number(x) and _number(y):
        return bool(x == y or abs(x - y) <= rtol * max(abs(x), abs(y)))
    return bool(x == y)


def _relative(x: Any, y: Any) -> str:
    if x == 0:
        return f"{y - x:+g}"
    return f"{y - x:+g} ({(y - x) / abs(x):+.2%})"


def _describe(ctx: ProjectContext, state: TreeState, path: str) -> str:
    """A file's size and hash in a state, as `1.2 kB 3f2a9c1d0e4b`; `(missing)`."""
    if path in state.files:
        digest, size, _ = state.files[path]
        return f"{_size(size)} {digest[:12]}"
    if path in state.code:
        _, sha = state.code[path]
        _, data = ctx.store.git.read_object(sha)
        return f"{_size(len(data))} {sha[:12]}"
    if path in state.links:
        return f"link -> {state.links[path]}"
    return "(missing)"


def _size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    size = float(n)
    for unit in ("kB", "MB", "GB"):
        size /= 1000
        if size < 1000 or unit == "GB":
            break
    return f"{size:.1f} {unit}"
