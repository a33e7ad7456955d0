"""What a push (or a bundle) sends: the chosen snapshots and runs with everything they
need, minus what the other side already holds.

A run needs its record and data (log, metrics, series, config), its before and after
snapshots, its environment and its sweep; a snapshot needs its file list and files, its
requirements, its environment and its code's commit; an environment needs its files.
Runs still RUNNING or QUEUED are left out (they are not finished), and said so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datmo.core.entity.environment import Environment
from datmo.core.entity.run import Run
from datmo.core.entity.snapshot import Snapshot
from datmo.core.entity.sweep import Sweep
from datmo.core.remote.layout import KINDS, Envelope, Item, record_key
from datmo.core.storage import runs as records
from datmo.core.storage.hashing import hash_file
from datmo.core.storage.project import ProjectContext
from datmo.errors import AmbiguousId, CorruptStore, DatmoError, NotFound

LOCAL_ONLY = ("origin", "files_pending")  # where this copy came from: not part of the record


@dataclass
class Selection:
    runs: list[Run] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)
    unfinished: list[Run] = field(default_factory=list)  # left out: RUNNING or QUEUED


@dataclass
class Plan:
    envelopes: dict[str, dict[str, Envelope]] = field(
        default_factory=lambda: {k: {} for k in KINDS}
    )
    objects: dict[str, Path] = field(default_factory=dict)  # digest -> a local file with its bytes
    refs: dict[str, str] = field(default_factory=dict)  # snapshot id -> its code's commit

    def count(self, kind: str) -> int:
        return len(self.envelopes[kind])

    def empty(self) -> bool:
        return not any(self.envelopes.values())

    def items(self, digests: set[str] | None = None) -> list[Item]:
        chosen = self.objects if digests is None else {d: self.objects[d] for d in digests}
        return [Item(d, p, p.stat().st_size) for d, p in sorted(chosen.items())]

    def records(self) -> list[tuple[str, bytes]]:
        """Every envelope, in the order a remote must receive them (KINDS)."""
        return [
            (record_key(kind, rid), env.to_bytes())
            for kind in KINDS
            for rid, env in sorted(self.envelopes[kind].items())
        ]


def select(ctx: ProjectContext, ids: tuple[str, ...] | list[str]) -> Selection:
    """The runs and snapshots that ids name (a run id, or anything that names a snapshot);
    no ids: every run and every snapshot `snapshot ls` shows."""
    from datmo.core.controller import snapshot as snapshots
    from datmo.core.task.process import effective

    store = ctx.store
    sel = Selection()
    if not ids:
        for rid in sorted(store.list_ids("runs")):
            run = records.read(store, rid)
            (sel.runs if _finished(run) else sel.unfinished).append(run)
        sel.snapshots = [s for s in snapshots.ls(ctx) if not s.hidden]
        return sel
    for ref in ids:
        try:
            run = records.read(store, ref)
        except (CorruptStore, AmbiguousId):
            raise
        except DatmoError:  # no run by that name: a snapshot, then
            sel.snapshots.append(snapshots.get(ctx, ref))
            continue
        if not _finished(run):
            status = effective(run).status
            raise DatmoError(
                f"run {run.id[:8]} is {status}; only finished runs are shared (wait for it, or "
                "'datmo stop' it)"
            )
        sel.runs.append(run)
    return sel


def _finished(run: Run) -> bool:
    return run.finished  # as recorded: a run whose supervisor died is settled by fsck first


def plan(ctx: ProjectContext, sel: Selection, have: dict[str, set[str]]) -> Plan:
    """Everything sel needs that `have` (kind -> ids the other side holds) lacks."""
    p = Plan()
    builder = _Builder(ctx, p, have)
    for run in sel.runs:
        builder.run(run)
    for snap in sel.snapshots:
        builder.snapshot(snap.id)
    return p


class _Builder:
    def __init__(self, ctx: ProjectContext, plan: Plan, have: dict[str, set[str]]) -> None:
        self.ctx, self.plan, self.have = ctx, plan, have
        self.store = ctx.store

    def _skip(self, kind: str, rid: str | None) -> bool:
        return not rid or rid in self.have.get(kind, ()) or rid in self.plan.envelopes[kind]

    def _object(self, digest: str | None, what: str) -> None:
        if not digest or digest in self.plan.objects:
            return
        path = self.store.objects.path(digest)
        if not self.store.objects.has(digest):
            raise CorruptStore(f"{what}: object {digest[:12]} is missing here; run 'datmo fsck'")
        self.plan.objects[digest] = path

    def run(self, run: Run) -> None:
        if self._skip("runs", run.id):
            return
        for sid in (run.before_snapshot_id, run.after_snapshot_id):
            self.snapshot(sid)
        self.environment(run.environment_id)
        if not self._skip("sweeps", run.sweep_id):
            assert run.sweep_id is not None
            try:
                doc = Sweep.from_dict(self.store.read_entity("sweeps", run.sweep_id)).to_dict()
                self.plan.envelopes["sweeps"][run.sweep_id] = Envelope("sweeps", run.sweep_id, doc)
            except NotFound:
                pass  # the sweep was removed; its runs stand on their own
        data = {}
        for name, path in records.shared_files(self.store, run.id).items():
            digest = hash_file(path)
            self.plan.objects[digest] = path
            data[name] = digest
        self.plan.envelopes["runs"][run.id] = Envelope("runs", run.id, _public(run.to_dict()), data)

    def snapshot(self, sid: str | None) -> None:
        if self._skip("snapshots", sid):
            return
        assert sid is not None
        snap = Snapshot.from_dict(self.store.read_entity("snapshots", sid))
        if snap.files_pending:  # pulled without its files: fetch them now, to pass them on
            from datmo.core.controller import pull

            snap = pull.ensure_files(self.ctx, snap)
        where = f"snapshot {sid[:8]}"
        self._object(snap.files_id, where)
        self._object(snap.requirements_id, where)
        for digest in _manifest_digests(self.ctx, snap):
            self._object(digest, where)
        if not self.store.git.has_object(snap.code_commit):
            raise CorruptStore(f"{where}: its code commit is missing here; run 'datmo fsck'")
        self.plan.refs[sid] = snap.code_commit
        self.environment(snap.environment_id)
        self.plan.envelopes["snapshots"][sid] = Envelope("snapshots", sid, _public(snap.to_dict()))

    def environment(self, eid: str | None) -> None:
        if self._skip("environments", eid):
            return
        assert eid is not None
        env = Environment.from_dict(self.store.read_entity("environments", eid))
        for digest in env.files.values():
            self._object(digest, f"environment {eid[:8]}")
        self.plan.envelopes["environments"][eid] = Envelope("environments", eid, env.to_dict())


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in LOCAL_ONLY}


def _manifest_digests(ctx: ProjectContext, snap: Snapshot) -> list[str]:
    try:
        manifest = json.loads(ctx.store.objects.read_bytes(snap.files_id))
        return [entry[0] for s in ("files", "extra") for entry in manifest.get(s, {}).values()]
    except (ValueError, KeyError, TypeError, IndexError):
        raise CorruptStore(
            f"snapshot {snap.id[:8]}'s file list is damaged; run 'datmo fsck'"
        ) from None
