"""What refers to what, so that nothing a run needs is ever deleted.

A run refers to its before and after snapshots and to its environment; a snapshot to
its environment; a sweep to the snapshot its runs start from. Deleting a snapshot that
a run uses hides it (`deleted_at`) and keeps its data; deleting an environment that
snapshots or runs use, with --force, removes its name and image and keeps its
definition, so `rerun` can build it again. gc frees each such record, and a run's own
hidden snapshots, once nothing refers to it any more.
"""

from __future__ import annotations

from datmo.core.storage.index import RunIndex
from datmo.core.storage.project import ProjectContext


def runs_of_snapshot(ctx: ProjectContext, snapshot_id: str) -> list[str]:
    """Ids of the runs that use the snapshot as their before or after snapshot."""
    idx = RunIndex(ctx.store)
    try:
        found = idx.referring("before_snapshot_id", snapshot_id)
        found += idx.referring("after_snapshot_id", snapshot_id)
        return sorted(set(found))
    finally:
        idx.close()


def runs_of_environment(ctx: ProjectContext, env_id: str) -> list[str]:
    idx = RunIndex(ctx.store)
    try:
        return sorted(idx.referring("environment_id", env_id))
    finally:
        idx.close()


def snapshots_of_environment(ctx: ProjectContext, env_id: str) -> list[str]:
    store = ctx.store
    return sorted(
        i
        for i in store.list_ids("snapshots")
        if store.read_entity("snapshots", i).get("environment_id") == env_id
    )


def used_by_runs(ctx: ProjectContext) -> tuple[set[str], set[str]]:
    """(the snapshots, the environments) that some run refers to."""
    idx = RunIndex(ctx.store)
    try:
        return idx.referenced()
    finally:
        idx.close()


def used_by_sweeps(ctx: ProjectContext) -> set[str]:
    """The snapshots sweeps start their runs from (resume and later trials need them)."""
    store = ctx.store
    found = set()
    for sid in store.list_ids("sweeps"):
        base = store.read_entity("sweeps", sid).get("base_snapshot_id")
        if isinstance(base, str):
            found.add(base)
    return found


def named(ids: list[str], noun: str) -> str:
    """'run 3f2a9c1d' or '3 runs (3f2a9c1d, 9c1d77aa, ...)'."""
    shown = ", ".join(i[:8] for i in ids[:5]) + (", ..." if len(ids) > 5 else "")
    return f"{noun} {shown}" if len(ids) == 1 else f"{len(ids)} {noun}s ({shown})"
