"""`datmo gc [--dry-run] [--grace DURATION]`: free what nothing refers to any more.

First the records nothing needs: a run's hidden before and after snapshots once no run
refers to them (the run was deleted), snapshots and environment definitions that were
deleted while runs used them and now no run does. Then the stored data no record refers
to. Hidden snapshots of other kinds (unsaved work kept by `checkout --force`) stay.
Under the project lock, and sparing anything younger than the grace period (an hour),
so a snapshot or run being made by another process (objects stored, record not yet
written) never loses them; `--grace 0` frees at once, for when nothing else runs.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from datmo.core.storage.project import ProjectContext
from datmo.core.tree import unchanged
from datmo.errors import DatmoError

GRACE_S = 3600.0


@dataclass
class GcReport:
    snapshots: int = 0  # records freed: run snapshots no run uses, deleted ones
    environments: int = 0  # definitions deleted with --force, no longer used
    objects: int = 0
    object_bytes: int = 0
    git_bytes: int = 0
    run_data: int = 0
    run_data_bytes: int = 0
    scratch_bytes: int = 0
    images: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    warning: str | None = None
    young: int = 0  # what the grace period kept: records and stored files
    young_bytes: int = 0
    grace_s: float = GRACE_S

    @property
    def freed(self) -> int:
        return self.object_bytes + self.git_bytes + self.run_data_bytes + self.scratch_bytes


class DamagedManifest(DatmoError):
    pass


def _records(
    ctx: ProjectContext, report: GcReport, now: float, grace_s: float, dry_run: bool
) -> set[str]:
    """Free the snapshot and environment records nothing needs; their ids (in a dry run,
    the ones that would go, so the objects count says what the real run would free)."""
    from datmo.core.controller import references
    from datmo.core.controller.snapshot import CURRENT, REF_PREFIX
    from datmo.core.entity.environment import Environment
    from datmo.core.entity.snapshot import Snapshot

    store = ctx.store
    by_runs, envs_by_runs = references.used_by_runs(ctx)
    by_runs |= references.used_by_sweeps(ctx)
    current = store.read_pointer(CURRENT)
    gone: set[str] = set()
    kept_envs: set[str] = set(envs_by_runs)
    damaged = False
    for sid in store.list_ids("snapshots"):
        try:
            snap = Snapshot.from_dict(store.read_entity("snapshots", sid))
        except DatmoError:
            damaged = True  # fsck's to name; what it refers to stays
            continue
        needed = sid in by_runs or sid == current or not snap.hidden
        if needed or not (snap.run_made or snap.deleted_at):
            if snap.environment_id:
                kept_envs.add(snap.environment_id)
            continue
        age = now - store.path(store.entity_path("snapshots", sid)).stat().st_mtime
        if age < grace_s:
            report.young += 1
            if snap.environment_id:
                kept_envs.add(snap.environment_id)
            continue
        gone.add(sid)
        report.snapshots += 1
        if not dry_run:
            store.delete_entity("snapshots", sid)
            store.git.delete_ref(REF_PREFIX + sid)
    active = ctx.info.active_environment_id
    for eid in [] if damaged else store.list_ids("environments"):
        try:
            env = Environment.from_dict(store.read_entity("environments", eid))
        except DatmoError:
            continue
        if env.deleted_at and eid not in kept_envs and eid != active:
            report.environments += 1
            if not dry_run:
                store.delete_entity("environments", eid)
    return gone


def live_objects(ctx: ProjectContext, skip: set[str] | None = None) -> set[str]:
    """Every object digest a snapshot or environment record refers to (but skip's)."""
    store = ctx.store
    live: set[str] = set()
    for sid in store.list_ids("snapshots"):
        if skip and sid in skip:
            continue
        doc = store.read_entity("snapshots", sid)
        for key in ("files_id", "requirements_id"):
            if doc.get(key):
                live.add(doc[key])
        try:
            manifest = json.loads(store.objects.read_bytes(doc["files_id"]))
        except (DatmoError, ValueError):
            # Without the manifest gc cannot know which files the snapshot still needs.
            raise DamagedManifest(
                f"snapshot {sid[:8]}'s file list is damaged, so no stored file was removed; "
                "see 'datmo fsck'"
            ) from None
        for section in ("files", "extra"):
            live.update(entry[0] for entry in manifest.get(section, {}).values())
    for eid in store.list_ids("environments"):
        live.update(store.read_entity("environments", eid).get("files", {}).values())
    return live


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(os.lstat(os.path.join(d, f)).st_size for d, _, files in os.walk(path) for f in files)


def collect(ctx: ProjectContext, dry_run: bool = False, grace_s: float = GRACE_S) -> GcReport:
    report = GcReport(grace_s=grace_s)
    store = ctx.store
    now = time.time()
    with store.lock():
        if not dry_run:
            # The tree stamp vouches for objects without checking each: drop it, and the
            # answer kept with it, before anything they name is deleted (the next
            # snapshot writes new ones).
            store.remove("cache/treestamp")
            store.remove("cache/lastcapture")
            store.remove(f"cache/{unchanged.NAME}")
        gone = _records(ctx, report, now, grace_s, dry_run)
        try:
            live = live_objects(ctx, skip=gone)
            candidates = list(store.objects.iter_digests())
        except DamagedManifest as e:
            report.warning, live, candidates = str(e), set(), []
        for digest in candidates:
            if digest in live:
                continue
            path = store.objects.path(digest)
            st = path.stat()
            if now - st.st_mtime < grace_s:
                report.young += 1
                report.young_bytes += st.st_size
                continue
            report.objects += 1
            report.object_bytes += st.st_size
            if not dry_run:
                store.objects.delete(digest)
        if report.objects and not dry_run:
            # Its entries may point at objects just deleted; it rebuilds itself.
            store.remove("cache/stat")
        runs = set(store.list_ids("runs"))
        data_root = store.path("run-data")
        if data_root.is_dir():
            for folder in data_root.iterdir():
                if folder.name not in runs and now - folder.stat().st_mtime >= grace_s:
                    report.run_data += 1
                    report.run_data_bytes += _size(folder)
                    if not dry_run:
                        shutil.rmtree(folder, ignore_errors=True)
        report.scratch_bytes = _scratch(ctx, now, grace_s, dry_run)
        report.scratch_bytes += _slurm_batches(ctx, runs, now, grace_s, dry_run)
        report.git_bytes = _git_gc(ctx, dry_run, grace_s)
        if not dry_run:
            store.objects.clean_tmp(grace_s)
    _docker(ctx, report, dry_run)
    return report


def _scratch(ctx: ProjectContext, now: float, grace_s: float, dry_run: bool) -> int:
    """Working copies left behind (a failed run's kept with --keep-workdir, a supervisor
    killed before it removed its own) once their run is over or gone; old rerun folders."""
    from datmo.core.controller import workcopy
    from datmo.core.storage import runs as records
    from datmo.core.task.process import effective

    freed = 0
    for parent, kind in ((ctx.store.path("tmp"), "tmp"), (ctx.store.path(workcopy.FOLDER), "work")):
        if not parent.is_dir():
            continue
        for entry in parent.iterdir():
            if not entry.is_dir() or now - entry.stat().st_mtime < grace_s:
                continue
            if kind == "tmp" and not entry.name.startswith("rerun-"):
                continue
            if kind == "work":
                try:
                    run = effective(records.read(ctx.store, entry.name))
                    if not run.finished:
                        continue  # queued or running: its copy is in use
                except DatmoError:
                    pass  # its run is gone
            freed += _size(entry)
            if not dry_run:
                if kind == "work":
                    workcopy.remove(ctx, f".datmo/{workcopy.FOLDER}/{entry.name}")
                else:
                    shutil.rmtree(entry, ignore_errors=True)
    return freed


def _slurm_batches(
    ctx: ProjectContext, runs: set[str], now: float, grace_s: float, dry_run: bool
) -> int:
    """Slurm submissions (their run list and job output) none of whose runs is left."""
    folder = ctx.store.path("slurm")
    if not folder.is_dir():
        return 0
    freed = 0
    for entry in folder.glob("*.json"):
        if now - entry.stat().st_mtime < grace_s:
            continue
        try:
            listed = set(json.loads(entry.read_bytes()).get("runs") or [])
        except (ValueError, AttributeError, OSError):
            continue  # fsck's to name
        if listed & runs:
            continue
        output = folder / entry.stem
        freed += entry.stat().st_size + (_size(output) if output.is_dir() else 0)
        if not dry_run:
            shutil.rmtree(output, ignore_errors=True)
            entry.unlink(missing_ok=True)
    return freed


def _git_gc(ctx: ProjectContext, dry_run: bool, grace_s: float) -> int:
    """Unreachable shadow-git objects (of deleted snapshots), after the same grace."""
    git = ctx.store.git
    expire = f"{int(grace_s)}.seconds.ago"
    # The same measure either way: the unreachable loose objects that are old enough.
    listing = git.run("prune", "--dry-run", f"--expire={expire}", check=False).stdout
    loose = (git.gitdir / "objects" / s[:2] / s[2:] for s in _shas(listing))
    freed = sum(p.stat().st_size for p in loose if p.exists())
    if not dry_run:
        git.run("gc", "--quiet", f"--prune={expire}")
    return freed


def _shas(listing: bytes) -> list[str]:
    return [line.split()[0] for line in listing.decode().splitlines() if line.strip()]


def _docker(ctx: ProjectContext, report: GcReport, dry_run: bool) -> None:
    """Images this project built for environments it no longer has; stopped task containers."""
    from datmo.core.executor.engine import engine_answers

    if not engine_answers():
        return
    from datmo.core.executor.engine import client

    cli = client()
    project_id = ctx.info.id
    envs = set(ctx.store.list_ids("environments"))
    for image in cli.images.list(filters={"label": f"datmo.project={project_id}"}):
        env_id = image.labels.get("datmo.environment", "")
        if env_id and env_id not in envs:
            report.images.append(image.short_id)
            if not dry_run:
                cli.images.remove(image.id, force=True)
    from datmo.core.controller import run as runs

    for container in cli.containers.list(
        all=True, filters={"label": f"datmo.project={project_id}"}
    ):
        run_id = container.labels.get("datmo.run", "")
        try:
            finished = runs.get(ctx, run_id).finished
        except DatmoError:
            finished = True  # its run is gone
        if finished:  # a container whose run ended (or is gone) is left over
            report.containers.append(container.short_id)
            if not dry_run:
                container.remove(force=True)
