"""Snapshots: create, list, inspect, update, delete, diff."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datmo.core.entity.base import new_id, utcnow
from datmo.core.entity.snapshot import Snapshot
from datmo.core.storage.project import JOURNAL, ProjectContext
from datmo.core.util import params
from datmo.core.util.signals import deferred_interrupt
from datmo.errors import DatmoError, NotFound

if TYPE_CHECKING:
    from datmo.core.tree import unchanged

KIND = "snapshots"
CURRENT = "current.json"
REF_PREFIX = "refs/datmo/snapshots/"
MAX_SKIPPED_RECORDED = 200


@dataclass
class CreateResult:
    """A snapshot create: the snapshot, whether it is new, what was left out."""

    snapshot: Snapshot
    created: bool  # False when the current snapshot already held exactly this
    skipped: list[list[str]] = field(default_factory=list)


def current_id(ctx: ProjectContext) -> str | None:
    return ctx.store.read_pointer(CURRENT)


def get(ctx: ProjectContext, ref: str) -> Snapshot:
    """A snapshot by id or unique prefix, a run's id (its after snapshot), RUN:before,
    or a label that one snapshot has (datmo.core.controller.names)."""
    from datmo.core.controller import names

    return names.snapshot(ctx, ref)


def current(ctx: ProjectContext) -> Snapshot | None:
    sid = current_id(ctx)
    if sid is None:
        return None
    try:
        return Snapshot.from_dict(ctx.store.read_entity(KIND, sid))
    except NotFound:
        return None  # deleted by hand; treat as no current snapshot


def ls(ctx: ProjectContext, all: bool = False) -> list[Snapshot]:
    """Newest first; hidden snapshots only with all=True."""
    store = ctx.store
    snaps = [Snapshot.from_dict(store.read_entity(KIND, i)) for i in store.list_ids(KIND)]
    if not all:
        snaps = [s for s in snaps if not s.hidden]
    return sorted(snaps, key=lambda s: (s.created_at, s.id), reverse=True)


def gather_params(
    tree: Path,
    config: dict[str, Any] | None,
    metrics: dict[str, Any] | None,
    config_file: str | None,
    stats_file: str | None,
    read_config: bool = True,
    read_stats: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Config and metrics: the tree's config.json and stats.json (unless read_* is False),
    then the named files, then the values given."""
    cfg = params.gather([], config_file, tree / "config.json" if read_config else None, "--config")
    cfg.update(params.normalize(config or {}, "config"))
    met = params.gather([], stats_file, tree / "stats.json" if read_stats else None, "--stats")
    met.update(params.normalize(metrics or {}, "metrics"))
    return cfg, met


def create(
    ctx: ProjectContext,
    message: str,
    *,
    label: str | None = None,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    config_file: str | None = None,
    stats_file: str | None = None,
    paths: list[str] | tuple[str, ...] = (),
    hidden: bool = False,
    run_id: str | None = None,
    tree: Path | None = None,
    reuse_state: bool = False,
    read_config: bool = True,
    read_stats: bool = True,
    made_by: str | None = None,
    tags: list[str] | tuple[str, ...] = (),
) -> CreateResult:
    """Capture code, files, environment, config and metrics as one snapshot.

    tree: capture another folder (a rerun's scratch copy); it never becomes current.
    reuse_state: return the current snapshot when it holds the same state, whatever
    its message (a run's before snapshot of an unchanged project).
    read_config, read_stats: take config.json, stats.json from the tree (False: a run's
    config is exactly what it was given; a stats.json its task did not write is not its).
    """
    from datmo.core.controller import environment
    from datmo.core.tree import capture, unchanged

    if not message.strip():
        raise DatmoError("a snapshot needs a message; pass -m 'what changed'")
    params.text(message, "the message")
    if label is not None:
        params.text(label, "the label")
    plain = not (config or metrics or config_file or stats_file or paths or tree or hidden)
    plain = plain and read_config and read_stats and not tags and made_by is None
    watch = _watch(ctx) if plain and not (reuse_state or run_id) else None
    cfg, met = gather_params(
        tree or ctx.root, config, metrics, config_file, stats_file, read_config, read_stats
    )
    captured = capture.capture_tree(ctx, [parse_extra(p) for p in paths], tree)
    environment_id = environment.in_use(ctx)
    store = ctx.store
    with store.lock(), deferred_interrupt():
        parent = current(ctx)
        snap = Snapshot(
            id=new_id(),
            created_at=utcnow(),
            message=message,
            label=label,
            config=cfg,
            metrics=met,
            code_id=captured.code_id,
            code_commit="",
            files_id=captured.files_id,
            environment_id=environment_id,
            requirements_id=captured.requirements_id,
            platform=captured.platform,
            hidden=hidden,
            made_by=made_by,
            tags=list(dict.fromkeys(tags)),
            parent_id=parent.id if parent else None,
            run_id=run_id,
            file_count=captured.file_count,
            code_count=captured.code_count,
            total_bytes=captured.total_bytes,
            skipped=captured.skipped[:MAX_SKIPPED_RECORDED],
        )
        if parent is not None and not hidden and snap.same_content(parent):
            if watch is not None:
                unchanged.save(ctx, watch, parent, captured.skipped)
            return CreateResult(parent, created=False, skipped=captured.skipped)
        if parent is not None and reuse_state and snap.same_state(parent):
            return CreateResult(parent, created=False, skipped=captured.skipped)
        snap = record(ctx, snap)
        if tree is None or tree == ctx.root:
            store.write_pointer(CURRENT, snap.id)
    return CreateResult(snap, created=True, skipped=captured.skipped)


def record(ctx: ProjectContext, snap: Snapshot) -> Snapshot:
    """Write a snapshot whose code and files are stored already: its commit, record, ref."""
    store = ctx.store
    with store.lock(), deferred_interrupt():
        # No git parent: each snapshot's commit stands alone, so deleting a snapshot lets gc
        # free its code (the record's parent_id keeps the history).
        commit = store.git.commit(snap.code_id, snap.message)
        store.git.sync()  # code on disk before the record that names it (not only the ref)
        snap = snap.evolve(code_commit=commit)
        store.write_entity(KIND, snap.to_dict())
        store.git.update_ref(REF_PREFIX + snap.id, commit)
    return snap


def _watch(ctx: ProjectContext) -> unchanged.Watch | None:
    """Sign what a plain create reads, before it reads it, so that an unchanged answer
    can be kept for the console script (see tree/unchanged.py). Only a shortcut: whatever
    goes wrong here means no answer is kept, and the create itself reports real faults."""
    try:
        return _signed(ctx)
    except (OSError, ValueError, DatmoError):  # ValueError: a NUL in a hand-edited cache
        return None


def _signed(ctx: ProjectContext) -> unchanged.Watch | None:
    from datmo.core.controller import environment
    from datmo.core.tree import capture, unchanged

    store = ctx.store
    watch = unchanged.Watch(os.fspath(ctx.root))
    if watch.add(store.path(*JOURNAL)) is not None:
        return None  # a checkout to finish first
    watch.add(store.path("project.json"))
    for name in ("config.json", "stats.json"):
        sig = watch.add(ctx.root / name)
        if sig is not None and stat.S_ISLNK(sig[0]):
            return None  # read through the link: its target's changes would not show
    watch.add(store.path(CURRENT))
    sid = current_id(ctx)
    if sid is None:
        return None
    watch.add(store.path(store.entity_path(KIND, sid)))
    capture.watch_inputs(ctx, watch)
    return watch if environment.watch_in_use(ctx, watch) else None


def parse_extra(spec: str) -> tuple[Path, str]:
    """--paths SRC[>DEST]: a file or folder from anywhere, stored under DEST."""
    src, _, dest = spec.partition(">")
    source = Path(os.path.expanduser(src.strip()))  # unknown ~user stays as typed
    try:
        found = source.exists()
    except OSError as e:
        raise DatmoError(f"--paths: cannot use '{src.strip()[:80]}': {e.strerror}") from None
    if not found:
        raise NotFound(f"--paths: no such file or folder '{src.strip()}'")
    name = dest.strip() or source.resolve().name
    parts = Path(name).parts
    if Path(name).is_absolute() or ".." in parts or not parts:
        raise DatmoError(f"--paths: destination '{name}' must be a relative path without '..'")
    return source, Path(name).as_posix()


def update(
    ctx: ProjectContext,
    ref: str,
    *,
    message: str | None = None,
    label: str | None = None,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Snapshot:
    """Change the words of a snapshot; config and metrics are merged, not replaced."""
    store = ctx.store
    with store.lock(), deferred_interrupt():
        snap = get(ctx, ref)
        changes: dict[str, Any] = {}
        if message is not None:
            if not message.strip():
                raise DatmoError("the message cannot be empty")
            changes["message"] = params.text(message, "the message")
        if label is not None:
            changes["label"] = params.text(label, "the label") or None
        if config:
            changes["config"] = {**snap.config, **params.normalize(config, "config")}
        if metrics:
            changes["metrics"] = {**snap.metrics, **params.normalize(metrics, "metrics")}
        snap = snap.evolve(**changes)
        store.write_entity(KIND, snap.to_dict())
    return snap


@dataclass
class Deleted:
    snapshot: Snapshot
    kept_for: list[str]  # the runs that use it: it is hidden and kept until they go


def delete(ctx: ProjectContext, ref: str, force: bool = False) -> Deleted:
    """Delete a snapshot. One that runs use is hidden instead, its data kept for them
    (a rerun starts from it, fsck checks it); gc frees it once those runs are deleted."""
    from datmo.core.controller import references

    store = ctx.store
    with store.lock(), deferred_interrupt():
        snap = get(ctx, ref)
        is_current = current_id(ctx) == snap.id
        if is_current and not force:
            raise DatmoError(
                f"snapshot {snap.id[:8]} is the current snapshot; check out another one first, "
                "or pass --force"
            )
        users = references.runs_of_snapshot(ctx, snap.id)
        if users:
            snap = snap.evolve(hidden=True, deleted_at=snap.deleted_at or utcnow())
            store.write_entity(KIND, snap.to_dict())
        else:
            store.delete_entity(KIND, snap.id)
            store.git.delete_ref(REF_PREFIX + snap.id)
        if is_current:
            store.write_pointer(CURRENT, None)
    return Deleted(snap, users)


def from_run(
    ctx: ProjectContext,
    run_ref: str,
    message: str,
    *,
    label: str | None = None,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Snapshot:
    """Make a run's after snapshot visible, with a message of the user's."""
    from datmo.core.storage import runs as records
    from datmo.core.task.process import effective

    run = effective(records.read(ctx.store, run_ref))
    if not run.after_snapshot_id:
        raise DatmoError(
            f"run {run.id[:8]} has no after snapshot yet ({run.status}); wait for it to finish"
        )
    if not message.strip():
        raise DatmoError("a snapshot needs a message; pass -m 'what changed'")
    with ctx.store.lock(), deferred_interrupt():
        snap = get(ctx, run.after_snapshot_id)
        snap = snap.evolve(
            hidden=False,
            message=params.text(message, "the message"),
            label=label if label is not None else snap.label,
            config={**snap.config, **params.normalize(config or {}, "config")},
            metrics={**snap.metrics, **params.normalize(metrics or {}, "metrics")},
        )
        ctx.store.write_entity(KIND, snap.to_dict())
    return snap
