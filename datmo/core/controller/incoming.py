"""Records that arrive from a remote or a bundle, written into this project in the order
that keeps it consistent at every instant (a pull killed half way leaves no record
without its data, and `datmo fsck` clean):

1. code: fetched under refs/datmo/incoming/<id> (reachable, but naming no snapshot);
2. objects: each hash-checked before it lands in the object store;
3. records: environments, snapshots (the record, then its ref), sweeps, and runs (their
   data files first); a record that exists here already is never overwritten.

Leftover incoming refs (a pull killed between 1 and 3) are settled by the next pull.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from datmo.core.entity.environment import Environment
from datmo.core.entity.run import Run
from datmo.core.entity.snapshot import Snapshot
from datmo.core.entity.sweep import Sweep
from datmo.core.remote.layout import INCOMING, KINDS, SNAPSHOT_REFS, DamagedRemote, Envelope
from datmo.core.storage import runs as records
from datmo.core.storage import series
from datmo.core.storage.project import ProjectContext
from datmo.core.util.signals import deferred_interrupt
from datmo.errors import CorruptStore, DatmoError

CLASSES: dict[str, Any] = {
    "environments": Environment,
    "snapshots": Snapshot,
    "sweeps": Sweep,
    "runs": Run,
}
FetchObjects = Callable[[list[str]], None]
FetchCode = Callable[[dict[str, tuple[str, str | None]]], None]


@dataclass
class Installed:
    added: dict[str, int] = field(default_factory=dict)  # kind -> records written
    objects: int = 0
    skipped: list[str] = field(default_factory=list)  # why some records were left out


def parse(envelopes: dict[str, dict[str, Envelope]], where: str) -> dict[str, dict[str, Any]]:
    """Each envelope's record as its entity, checked; a bad one refuses the lot."""
    out: dict[str, dict[str, Any]] = {k: {} for k in KINDS}
    for kind, found in envelopes.items():
        for rid, env in found.items():
            try:
                out[kind][rid] = CLASSES[kind].from_dict(dict(env.record))
            except (DatmoError, TypeError, ValueError, KeyError) as e:
                raise DamagedRemote(f"{kind} record {rid[:8]} on {where} is damaged: {e}") from None
    return out


def file_digests(ctx: ProjectContext, snap: Snapshot) -> list[str]:
    """The objects a snapshot's file list names (the list itself must be here)."""
    try:
        manifest = json.loads(ctx.store.objects.read_bytes(snap.files_id))
        return [e[0] for s in ("files", "extra") for e in manifest.get(s, {}).values()]
    except (ValueError, KeyError, TypeError, IndexError):
        raise CorruptStore(f"snapshot {snap.id[:8]}'s file list is damaged") from None


def settle_incoming(ctx: ProjectContext) -> None:
    """Refs a killed pull left: a snapshot whose record was written gets its own ref."""
    git, store = ctx.store.git, ctx.store
    for ref, sha in git.list_refs(INCOMING).items():
        sid = ref[len(INCOMING) :]
        if (
            store.path("snapshots", f"{sid}.json").is_file()
            and git.read_ref(SNAPSHOT_REFS + sid) is None
        ):
            git.update_ref(SNAPSHOT_REFS + sid, sha)
        git.delete_ref(ref)


def install(
    ctx: ProjectContext,
    envelopes: dict[str, dict[str, Envelope]],
    where: str,
    origin: str,
    fetch_objects: FetchObjects,
    fetch_code: FetchCode,
    with_files: bool = True,
) -> Installed:
    store, git = ctx.store, ctx.store.git
    result = Installed()
    # Only what is new here; a record this project has is kept as it is.
    fresh = {
        k: {i: e for i, e in envelopes.get(k, {}).items() if not _exists(ctx, k, i)} for k in KINDS
    }
    entities = parse(fresh, where)
    for rid, run in list(entities["runs"].items()):
        if not run.finished:
            result.skipped.append(
                f"run {rid[:8]} is {run.status} there; only finished runs are pulled"
            )
            del entities["runs"][rid]
            del fresh["runs"][rid]
    # 1. code
    wants = {
        sid: (snap.code_commit, fresh["snapshots"][sid].bundle)
        for sid, snap in entities["snapshots"].items()
        if not git.has_object(snap.code_commit)
    }
    if wants:
        fetch_code(wants)
    for sid, snap in entities["snapshots"].items():
        # Code this project had already (from an earlier, interrupted pull) is held by an
        # incoming ref too: a pull killed between a record and its ref leaves no gap.
        if git.read_ref(INCOMING + sid) is None and git.has_object(snap.code_commit):
            git.update_ref(INCOMING + sid, snap.code_commit)
    # 2. objects: file lists, requirements, environments, run data; then the files
    first: set[str] = set()
    for snap in entities["snapshots"].values():
        first.update(d for d in (snap.files_id, snap.requirements_id) if d)
    for env in entities["environments"].values():
        first.update(env.files.values())
    for e in fresh["runs"].values():
        first.update(e.data.values())
    result.objects += _fetch(ctx, first, fetch_objects)
    if with_files:
        files = {d for snap in entities["snapshots"].values() for d in file_digests(ctx, snap)}
        result.objects += _fetch(ctx, files, fetch_objects)
    # 3. records
    for kind in KINDS:
        for rid, entity in sorted(entities[kind].items()):
            with store.lock(), deferred_interrupt():
                if _exists(ctx, kind, rid):
                    continue  # another pull wrote it meanwhile
                _write(ctx, kind, entity, fresh[kind][rid], origin, with_files)
            result.added[kind] = result.added.get(kind, 0) + 1
    settle_incoming(ctx)
    return result


def _exists(ctx: ProjectContext, kind: str, rid: str) -> bool:
    return ctx.store.path(kind, f"{rid}.json").is_file()


def _fetch(ctx: ProjectContext, digests: set[str], fetch: FetchObjects) -> int:
    missing = sorted(d for d in digests if not ctx.store.objects.has(d))
    if missing:
        ctx.store.objects.check_space(0)
        fetch(missing)
    return len(missing)


def _write(
    ctx: ProjectContext, kind: str, entity: Any, env: Envelope, origin: str, with_files: bool
) -> None:
    store, git = ctx.store, ctx.store.git
    if kind == "snapshots":
        snap = entity.evolve(origin=origin, files_pending=not with_files)
        store.write_entity(kind, snap.to_dict())
        git.update_ref(SNAPSHOT_REFS + snap.id, snap.code_commit)
    elif kind == "runs":
        records.install_data(store, entity.id, env.data)
        # Its series, read by range, are made from the metrics file it came with.
        series.rebuild(store, entity.id)
        records.save(store, entity.evolve(origin=origin))
    else:
        store.write_entity(kind, entity.to_dict())
