"""What a user may call a snapshot or a run.

Wherever a snapshot is expected: its id (or a unique prefix of 4+ characters), a run's
id or prefix (meaning that run's after snapshot; `RUN:before` and `RUN:after` say which
one), or a label that exactly one snapshot has (`datmo snapshot checkout best`). A
prefix that matches both a snapshot and a run is refused, as git refuses an ambiguous
one.
"""

from __future__ import annotations

from datmo.core.entity.run import Run
from datmo.core.entity.snapshot import Snapshot
from datmo.core.storage import runs as records
from datmo.core.storage.project import ProjectContext
from datmo.core.task.process import effective
from datmo.errors import AmbiguousId, CorruptStore, DatmoError, NotFound

KIND = "snapshots"
_SIDES = {"before": "before_snapshot_id", "after": "after_snapshot_id"}


def _by_id(ctx: ProjectContext, kind: str, ref: str) -> str | None:
    try:
        return ctx.store.resolve(kind, ref)
    except (AmbiguousId, CorruptStore):
        raise
    except DatmoError:  # not hex, too short, or no such id
        return None


def _read(ctx: ProjectContext, sid: str) -> Snapshot:
    return Snapshot.from_dict(ctx.store.read_entity(KIND, sid))


def run_snapshot(ctx: ProjectContext, run: Run, side: str) -> Snapshot:
    sid = getattr(run, _SIDES[side])
    if not sid:
        raise NotFound(f"run {run.id[:8]} has no {side} snapshot yet ({run.status})")
    return _read(ctx, sid)


def snapshot(ctx: ProjectContext, ref: str) -> Snapshot:
    """The snapshot a user means by ref (see the module docstring)."""
    text = ref.strip()
    base, _, side = text.rpartition(":")
    if base and side in _SIDES:
        run_id = _by_id(ctx, records.KIND, base)
        if run_id is None:
            raise NotFound(f"no run with id '{base}'; see 'datmo ls'")
        return run_snapshot(ctx, records.read(ctx.store, run_id), side)
    sid = _by_id(ctx, KIND, text)
    if sid is not None and len(text) >= 40:
        return _read(ctx, sid)  # a whole id: no need to look further
    run_id = _by_id(ctx, records.KIND, text)
    if sid is not None and run_id is not None:
        raise AmbiguousId("snapshot or run", text, [sid, run_id])
    if sid is not None:
        return _read(ctx, sid)
    if run_id is not None:
        return run_snapshot(ctx, effective(records.read(ctx.store, run_id)), "after")
    labelled = labelled_as(ctx, text)
    if len(labelled) > 1:
        ids = ", ".join(s.id[:8] for s in labelled[:10])
        raise DatmoError(f"{len(labelled)} snapshots have the label '{text}' ({ids}); use an id")
    if labelled:
        return labelled[0]
    raise NotFound(
        f"no snapshot, run or label '{ref}' (RUN:before and RUN:after name a run's "
        "snapshots); see 'datmo snapshot ls' and 'datmo ls'"
    )


def labelled_as(ctx: ProjectContext, label: str) -> list[Snapshot]:
    store = ctx.store
    found = []
    for sid in store.list_ids(KIND):
        doc = store.read_entity(KIND, sid)
        if doc.get("label") == label:
            found.append(Snapshot.from_dict(doc))
    return found


def run_or_snapshot(ctx: ProjectContext, ref: str) -> Run | Snapshot:
    """For `datmo tag`: a run by id or prefix, else a snapshot by any of its names."""
    run_id = _by_id(ctx, records.KIND, ref.strip())
    sid = _by_id(ctx, KIND, ref.strip())
    if run_id and sid:
        raise AmbiguousId("snapshot or run", ref, [sid, run_id])
    if run_id:
        return records.read(ctx.store, run_id)
    return snapshot(ctx, ref)
