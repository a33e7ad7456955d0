"""`datmo pull [NAME] [ID...|--all] [--no-files]` and `datmo clone URL DIR`: bring
snapshots and runs from a remote, with what they need.

With --no-files the snapshots' stored files (data sets, models) stay on the remote: the
records, code, logs and metrics come, and `checkout` or `rerun` fetches the files a
snapshot needs the first time it is used (ensure_files), from the remote it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from datmo.core.controller import incoming
from datmo.core.controller import remote as remotes
from datmo.core.entity.snapshot import Snapshot
from datmo.core.remote.layout import KINDS, Envelope, Progress, parse_envelope, record_key
from datmo.core.storage.project import ProjectContext
from datmo.core.util.signals import deferred_interrupt
from datmo.errors import AmbiguousId, DatmoError, NotFound

if TYPE_CHECKING:
    from datmo.core.remote.layout import Transport


@dataclass
class PullResult:
    remote: str
    installed: incoming.Installed


def _resolve(ids: tuple[str, ...], there: dict[str, set[str]], where: str) -> dict[str, set[str]]:
    """Run or snapshot ids (or unique prefixes of 4+ characters) among a remote's records."""
    chosen: dict[str, set[str]] = {"runs": set(), "snapshots": set()}
    for ref in ids:
        p = ref.strip().lower()
        found = [(k, i) for k in chosen for i in there[k] if len(p) >= 4 and i.startswith(p)]
        if not found:
            raise NotFound(f"{where} has no run or snapshot '{ref}'")
        if len(found) > 1:
            raise AmbiguousId("run or snapshot", ref, [i for _, i in found])
        chosen[found[0][0]].add(found[0][1])
    return chosen


def gather(
    ctx: ProjectContext, transport: Transport, ids: tuple[str, ...]
) -> dict[str, dict[str, Envelope]]:
    """The envelopes of what ids name on the remote (all of it, with none) and of every
    record they need that this project lacks."""
    store, where = ctx.store, transport.label
    there = transport.record_ids()
    wanted = (
        _resolve(ids, there, where) if ids else {k: set(there[k]) for k in ("runs", "snapshots")}
    )
    got: dict[str, dict[str, Envelope]] = {k: {} for k in KINDS}
    todo = {
        k: {i for i in wanted.get(k, ()) if not store.path(k, f"{i}.json").is_file()} for k in KINDS
    }
    while any(todo.values()):
        keys = [record_key(k, i) for k in KINDS for i in sorted(todo[k])]
        raw = transport.read_records(keys)
        nxt: dict[str, set[str]] = {k: set() for k in KINDS}
        for kind in KINDS:
            for rid in todo[kind]:
                key = record_key(kind, rid)
                if key not in raw:
                    raise NotFound(f"{where} has no {kind.rstrip('s')} {rid[:8]}")
                env = got[kind][rid] = parse_envelope(key, raw[key], where)
                for k2, dep in _needs(kind, env.record):
                    if not dep or dep in got[k2] or store.path(k2, f"{dep}.json").is_file():
                        continue
                    if k2 != "sweeps" or dep in there["sweeps"]:  # a sweep may be gone
                        nxt[k2].add(dep)
        todo = nxt
    return got


def _needs(kind: str, rec: dict[str, object]) -> list[tuple[str, str | None]]:
    def s(key: str) -> str | None:
        v = rec.get(key)
        return v if isinstance(v, str) else None

    if kind == "runs":
        return [
            ("snapshots", s("before_snapshot_id")),
            ("snapshots", s("after_snapshot_id")),
            ("environments", s("environment_id")),
            ("sweeps", s("sweep_id")),
        ]
    if kind == "snapshots":
        return [("environments", s("environment_id"))]
    return []


def _open(ctx: ProjectContext, name: str | None) -> tuple[remotes.Remote, Transport]:
    remote = remotes.get(ctx, name)
    transport = remotes.connect(remote)
    meta = transport.read_meta()
    if meta is None:
        transport.close()
        raise DatmoError(
            f"remote '{remote.name}' ({transport.label}) holds nothing yet; push to it first"
        )
    remotes.check_project(ctx, meta, f"remote '{remote.name}' ({transport.label})")
    return remote, transport


def from_transport(
    ctx: ProjectContext,
    transport: Transport,
    origin: str,
    ids: tuple[str, ...],
    with_files: bool,
    progress: Progress = None,
) -> incoming.Installed:
    scratch = ctx.store.path("tmp")
    incoming.settle_incoming(ctx)
    envelopes = gather(ctx, transport, ids)
    return incoming.install(
        ctx,
        envelopes,
        transport.label,
        origin,
        lambda digests: transport.fetch_objects(digests, ctx.store.objects, progress),
        lambda wants: transport.fetch_code(ctx.store.git, wants, scratch),
        with_files,
    )


def pull(
    ctx: ProjectContext,
    name: str | None,
    ids: tuple[str, ...],
    with_files: bool = True,
    progress: Progress = None,
) -> PullResult:
    remote, transport = _open(ctx, name)
    try:
        done = from_transport(ctx, transport, remote.name, ids, with_files, progress)
        if with_files and not ids:
            done.objects += _fill_pending(ctx, transport, remote.name)
        return PullResult(remote.name, done)
    finally:
        transport.close()


def _fill_pending(ctx: ProjectContext, transport: Transport, origin: str) -> int:
    """A pull with files also brings the files of snapshots pulled before without them."""
    store = ctx.store
    pending = []
    for sid in store.list_ids("snapshots"):
        snap = Snapshot.from_dict(store.read_entity("snapshots", sid))
        if snap.files_pending and snap.origin == origin:
            pending.append(snap)
    missing = sorted(
        {
            d
            for snap in pending
            for d in incoming.file_digests(ctx, snap)
            if not store.objects.has(d)
        }
    )
    if missing:
        transport.fetch_objects(missing, store.objects, None)
    for snap in pending:
        with store.lock(), deferred_interrupt():
            now = Snapshot.from_dict(store.read_entity("snapshots", snap.id))
            store.write_entity("snapshots", now.evolve(files_pending=False).to_dict())
    return len(missing)


def ensure_files(ctx: ProjectContext, snap: Snapshot, progress: Progress = None) -> Snapshot:
    """A snapshot pulled with --no-files gets its files, from the remote it came from (or
    the default one) the first time something needs them."""
    if not snap.files_pending:
        return snap
    objects = ctx.store.objects
    missing = [d for d in incoming.file_digests(ctx, snap) if not objects.has(d)]
    if missing:
        name = snap.origin if snap.origin in ctx.info.remotes else None
        try:
            remote, transport = _open(ctx, name)
        except DatmoError as e:
            raise DatmoError(
                f"snapshot {snap.id[:8]}'s files are still on remote '{snap.origin}' and cannot "
                f"be fetched: {e}"
            ) from None
        try:
            if progress:
                what = f"{len(missing)} file(s) of snapshot {snap.id[:8]}"
                progress(f"fetching {what} from '{remote.name}'")
            transport.fetch_objects(missing, objects, progress)
        finally:
            transport.close()
    with ctx.store.lock(), deferred_interrupt():
        now = Snapshot.from_dict(ctx.store.read_entity("snapshots", snap.id))
        snap = now.evolve(files_pending=False)
        ctx.store.write_entity("snapshots", snap.to_dict())
    return snap
