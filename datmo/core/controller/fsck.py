"""`datmo fsck [--repair]`: check the whole store; repair what can be derived.

Nothing is ever deleted by a repair: unreadable records are moved aside into
`.datmo/quarantine`, the index is rebuilt from the records, missing snapshot
refs are written again, and runs whose supervisor vanished are marked LOST.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from datmo.core.entity.environment import Environment
from datmo.core.entity.run import FINAL, LOST, RUNNING, Run
from datmo.core.entity.snapshot import Snapshot
from datmo.core.storage import series
from datmo.core.storage.fsutil import makedirs
from datmo.core.storage.project import ProjectContext
from datmo.core.task.process import effective
from datmo.errors import DatmoError

QUARANTINE = "quarantine"
ENTITIES: dict[str, Any] = {"snapshots": Snapshot, "environments": Environment, "runs": Run}


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, text: str) -> None:
        self.problems.append(text)


def check(ctx: ProjectContext, repair: bool = False) -> Report:
    """Check everything; with repair, fix what can be derived, then check again."""
    report = _check(ctx, repair)
    if repair and report.repaired:
        again = _check(ctx, False)
        again.repaired = report.repaired
        return again
    return report


def _check(ctx: ProjectContext, repair: bool) -> Report:
    r = Report()
    store = ctx.store
    with store.lock():
        _check_project(ctx, r, repair)
        loaded: dict[str, dict[str, Any]] = {kind: {} for kind in ENTITIES}
        for kind, cls in ENTITIES.items():
            for entity_id in store.list_ids(kind):
                try:
                    loaded[kind][entity_id] = cls.from_dict(store.read_entity(kind, entity_id))
                except (DatmoError, TypeError, ValueError, KeyError) as e:
                    r.add(f"{kind}/{entity_id}.json is unreadable: {e}")
                    if repair:
                        _quarantine(ctx, kind, entity_id)
                        r.repaired.append(f"moved {kind}/{entity_id}.json to {QUARANTINE}/")
            r.counts[kind] = len(loaded[kind])
        _check_snapshots(ctx, loaded, r, repair)
        _check_runs(ctx, loaded, r, repair)
        _check_objects(ctx, r)
        _check_containers(ctx, loaded["runs"], r, repair)
        _check_git(ctx, r)
        _check_index(ctx, loaded["runs"], r, repair)
        current = store.read_pointer("current.json")
        if current and current not in loaded["snapshots"]:
            r.add(f"current.json names snapshot {current[:8]}, which does not exist")
            if repair:
                store.write_pointer("current.json", None)
                r.repaired.append("cleared current.json (check out a snapshot to set it)")
        if store.path("journal", "checkout.json").exists():
            r.add("a checkout was interrupted")
            if repair:
                from datmo.core.controller.checkout import recover_if_needed

                recover_if_needed(ctx)
                r.repaired.append("finished the interrupted checkout")
    return r


def _check_project(ctx: ProjectContext, r: Report, repair: bool) -> None:
    """The project record; a damaged one is rebuilt from its backup copy."""
    from datmo.core.storage.project import BACKUP, RECORD, parse

    store = ctx.store
    try:
        doc = store.read_json(RECORD)
        parse(doc)
    except DatmoError as e:
        r.add(f"project.json: {e}")
        if repair:
            project, fresh = ctx.recovered_info()
            ctx.save_info(project)
            r.repaired.append(
                "made a new project.json: neither it nor its backup could be read, so the "
                "project has a new id"
                if fresh
                else "rebuilt project.json from its backup (the project id and settings kept)"
            )
        return
    try:
        same = store.read_json(BACKUP) == doc
    except DatmoError:
        same = False
    if repair and not same:  # a project made by an older datmo, or a damaged copy
        store.write_json(BACKUP, doc)
        r.repaired.append("wrote the backup copy of project.json")


def _quarantine(ctx: ProjectContext, kind: str, entity_id: str) -> None:
    src = ctx.store.path(kind, f"{entity_id}.json")
    folder = ctx.store.path(QUARANTINE, kind)
    makedirs(folder, ctx.store.owner)
    os.replace(src, folder / f"{entity_id}.json")


def _check_snapshots(
    ctx: ProjectContext, loaded: dict[str, dict[str, Any]], r: Report, repair: bool
) -> None:
    store = ctx.store
    git, objects = store.git, store.objects
    refs = git.list_refs("refs/datmo/snapshots/")
    for sid, snap in loaded["snapshots"].items():
        where = f"snapshot {sid[:8]}"
        if not git.has_object(snap.code_id):
            r.add(f"{where}: code tree {snap.code_id[:12]} is missing from .datmo/git")
        if snap.environment_id and snap.environment_id not in loaded["environments"]:
            r.add(f"{where}: environment {snap.environment_id[:8]} does not exist")
        for digest, what in (
            (snap.files_id, "file manifest"),
            (snap.requirements_id, "requirements"),
        ):
            if digest and not objects.has(digest):
                r.add(f"{where}: {what} object {digest[:12]} is missing")
        if objects.has(snap.files_id) and not snap.files_pending:  # pending: on its remote
            try:
                manifest = json.loads(objects.read_bytes(snap.files_id))
                for section in ("files", "extra"):
                    for path, entry in manifest.get(section, {}).items():
                        if not objects.has(entry[0]):
                            r.add(f"{where}: stored copy of '{path}' is missing")
            except (DatmoError, ValueError, KeyError, TypeError, IndexError):
                r.add(f"{where}: file manifest {snap.files_id[:12]} is damaged")
        ref = f"refs/datmo/snapshots/{sid}"
        if ref not in refs and git.read_ref(f"refs/datmo/incoming/{sid}") == snap.code_commit:
            # A pull stopped between the record and its ref: the commit is held by the
            # pull's own ref, and the next pull (or this repair) gives it the usual one.
            if repair:
                git.update_ref(ref, snap.code_commit)
                r.repaired.append(f"wrote the git ref of {where} (an interrupted pull)")
        elif ref not in refs:
            r.add(f"{where}: its git ref is missing")
            if repair and snap.code_commit and git.has_object(snap.code_commit):
                git.update_ref(ref, snap.code_commit)
                r.repaired.append(f"wrote the git ref of {where}")
    for ref in refs:
        if ref.rsplit("/", 1)[-1] not in loaded["snapshots"]:
            r.add(f"{ref} names no snapshot record")
            if repair:
                git.delete_ref(ref)
                r.repaired.append(f"removed {ref}")


def _check_runs(
    ctx: ProjectContext, loaded: dict[str, dict[str, Any]], r: Report, repair: bool
) -> None:
    from datmo.core.controller import run as runs

    for rid, run in loaded["runs"].items():
        where = f"run {rid[:8]}"
        for sid in (run.before_snapshot_id, run.after_snapshot_id):
            if sid and sid not in loaded["snapshots"]:
                r.add(f"{where}: snapshot {sid[:8]} does not exist")
        if run.status == RUNNING and effective(run).status == LOST:
            r.add(f"{where}: recorded RUNNING, but its supervisor is gone")
            if repair:
                runs.settle_lost(ctx, effective(run))
                loaded["runs"][rid] = Run.from_dict(ctx.store.read_entity("runs", rid))
                r.repaired.append(f"marked {where} LOST and removed what it left")
        problem = series.check(ctx.store, rid, final=run.status in FINAL)
        if problem:
            r.add(f"{where}: {problem}")
            if repair:
                series.repair(ctx.store, rid)
                r.repaired.append(f"built {where}'s series again from its metrics.jsonl")


def _check_containers(ctx: ProjectContext, runs_: dict[str, Run], r: Report, repair: bool) -> None:
    """Task containers of this project whose run is over, or gone."""
    from datmo.core.executor.engine import engine_answers

    if not engine_answers():
        return
    from datmo.core.executor.engine import client

    try:
        label = f"datmo.project={ctx.info.id}"
    except DatmoError:
        return  # the project record is damaged: reported above; its id is unknown
    for container in client().containers.list(all=True, filters={"label": label}):
        run_id = container.labels.get("datmo.run")
        if not run_id:
            continue
        run = runs_.get(run_id)
        if run is not None and not effective(run).finished:
            continue
        r.add(f"container {container.short_id} of run {run_id[:8]} was left behind")
        if repair:
            container.remove(force=True)
            r.repaired.append(f"removed container {container.short_id}")


def _check_objects(ctx: ProjectContext, r: Report) -> None:
    objects = ctx.store.objects
    n = 0
    for digest in objects.iter_digests():
        n += 1
        if not objects.verify(digest):
            r.add(f"object {digest[:12]} in .datmo/objects does not match its hash")
    r.counts["objects"] = n


def _check_git(ctx: ProjectContext, r: Report) -> None:
    for line in ctx.store.git.fsck():
        r.add(f"git: {line}")


def _check_index(ctx: ProjectContext, runs_: dict[str, Run], r: Report, repair: bool) -> None:
    from datmo.core.storage.index import RunIndex

    idx = RunIndex(ctx.store)
    try:
        rows = idx.snapshot_rows()
        if rows is None:
            return  # derived data, built on first use
        truth = {rid: run.to_dict() for rid, run in runs_.items()}
        if rows != truth and not idx.is_fresh():
            # It knows it is behind (a writer stopped between a record and its row, as
            # a killed pull can): the next reader brings it up to date; no damage.
            if repair:
                idx.refresh()
        elif rows != truth:
            r.add(f"the run index disagrees with the records ({len(rows)} rows, {len(truth)} runs)")
            if repair:
                idx.rebuild()
                r.repaired.append("rebuilt the run index")
    except Exception as e:
        r.add(f"the run index cannot be read: {e}")
        if repair:
            idx.rebuild()
            r.repaired.append("rebuilt the run index")
    finally:
        idx.close()
