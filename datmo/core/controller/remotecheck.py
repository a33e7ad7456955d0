"""`datmo fsck --remote NAME`: check a remote's objects against their hashes and its
records against its objects, code and each other. Read-only: it reads every object."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import Any

from datmo.core.controller import incoming
from datmo.core.controller import remote as remotes
from datmo.core.remote.layout import KINDS, DamagedRemote, Envelope, parse_envelope, record_key
from datmo.core.storage.fsutil import makedirs
from datmo.core.storage.objects import ObjectStore
from datmo.core.storage.project import ProjectContext
from datmo.errors import DatmoError


@dataclass
class RemoteReport:
    remote: str
    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def check(ctx: ProjectContext, name: str | None) -> RemoteReport:
    remote = remotes.get(ctx, name)
    t = remotes.connect(remote)
    report = RemoteReport(remote.name)
    add = report.problems.append
    try:
        meta = t.read_meta()
        if meta is None:
            add(f"{t.label} holds no datmo remote (nothing pushed yet)")
            return report
        remotes.check_project(ctx, meta, f"remote '{remote.name}'")
        objects: set[str] = set()
        for digest, got in t.object_hashes():
            objects.add(digest)
            if got != digest:
                add(
                    f"object {digest[:12]} "
                    + ("cannot be read" if got is None else "does not match its hash")
                )
        report.counts["objects"] = len(objects)
        ids = t.record_ids()
        raw = t.read_records([record_key(k, i) for k in KINDS for i in sorted(ids[k])])
        envelopes: dict[str, dict[str, Envelope]] = {k: {} for k in KINDS}
        for kind in KINDS:
            report.counts[kind] = len(ids[kind])
            for rid in sorted(ids[kind]):
                key = record_key(kind, rid)
                try:
                    envelopes[kind][rid] = parse_envelope(key, raw.get(key, b""), t.label)
                except DatmoError as e:
                    add(str(e))
        entities: dict[str, dict[str, Any]] = {k: {} for k in KINDS}
        for kind in KINDS:
            for rid, env in envelopes[kind].items():
                try:
                    entities[kind].update(incoming.parse({kind: {rid: env}}, t.label)[kind])
                except DamagedRemote as e:
                    add(str(e))
        _references(ctx, t, entities, envelopes, objects, add)
        wants = {
            sid: (s.code_commit, envelopes["snapshots"][sid].bundle)
            for sid, s in entities["snapshots"].items()
        }
        for line in t.code_problems(wants):
            add(line)
    finally:
        t.close()
    return report


def _references(
    ctx: ProjectContext,
    t: Any,
    entities: dict[str, dict[str, Any]],
    envelopes: dict[str, dict[str, Envelope]],
    objects: set[str],
    add: Any,
) -> None:
    def need(kind: str, rid: str | None, by: str) -> None:
        if rid and rid not in entities[kind]:
            add(f"{by}: {kind[:-1]} {rid[:8]} is missing")

    def have(digest: str | None, by: str, what: str) -> None:
        if digest and digest not in objects:
            add(f"{by}: {what} (object {digest[:12]}) is missing")

    # The file lists are read through a scratch store (hash-checked on the way).
    scratch = ctx.store.path("tmp", f"fsck-remote-{os.getpid()}")
    makedirs(scratch, ctx.store.owner)
    lists = ObjectStore(scratch)
    try:
        manifests = sorted(
            {s.files_id for s in entities["snapshots"].values() if s.files_id in objects}
        )
        if manifests:
            t.fetch_objects(manifests, lists, None)
        for sid, snap in entities["snapshots"].items():
            by = f"snapshot {sid[:8]}"
            need("environments", snap.environment_id, by)
            have(snap.files_id, by, "its file list")
            have(snap.requirements_id, by, "its requirements")
            if snap.files_id in objects:
                try:
                    for digest in _listed(lists, snap.files_id):
                        have(digest, by, "a stored file")
                except DatmoError:
                    add(f"{by}: its file list is damaged")
        for eid, env in entities["environments"].items():
            for digest in env.files.values():
                have(digest, f"environment {eid[:8]}", "a file of its definition")
        for rid, run in entities["runs"].items():
            by = f"run {rid[:8]}"
            need("snapshots", run.before_snapshot_id, by)
            need("snapshots", run.after_snapshot_id, by)
            need("environments", run.environment_id, by)
            for fname, digest in envelopes["runs"][rid].data.items():
                have(digest, by, fname)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _listed(store: ObjectStore, files_id: str) -> list[str]:
    import json

    try:
        manifest = json.loads(store.read_bytes(files_id))
        return [e[0] for s in ("files", "extra") for e in manifest.get(s, {}).values()]
    except (ValueError, KeyError, TypeError, IndexError):
        raise DatmoError("damaged file list") from None
