"""`datmo gc [--dry-run]`: free what no snapshot, run or environment refers to.

Hidden snapshots count as references. Under the project lock, and sparing
unreferenced objects younger than an hour, so a snapshot being written by
another process (objects stored, record not yet written) never loses them.
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
    objects: int = 0
    object_bytes: int = 0
    git_bytes: int = 0
    run_data: int = 0
    run_data_bytes: int = 0
    scratch_bytes: int = 0
    images: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    warning: str | None = None

    @property
    def freed(self) -> int:
        return self.object_bytes + self.git_bytes + self.run_data_bytes + self.scratch_bytes


class DamagedManifest(DatmoError):
    pass


def live_objects(ctx: ProjectContext) -> set[str]:
    """Every object digest a snapshot or environment record refers to."""
    store = ctx.store
    live: set[str] = set()
    for sid in store.list_ids("snapshots"):
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
    report = GcReport()
    store = ctx.store
    now = time.time()
    with store.lock():
        if not dry_run:
            # The tree stamp vouches for objects without checking each: drop it, and the
            # answer kept with it, before anything they name is deleted (the next
            # snapshot writes new ones).
            store.remove("cache/treestamp")
            store.remove(f"cache/{unchanged.NAME}")
        try:
            live = live_objects(ctx)
            candidates = list(store.objects.iter_digests())
        except DamagedManifest as e:
            report.warning, live, candidates = str(e), set(), []
        for digest in candidates:
            if digest in live:
                continue
            path = store.objects.path(digest)
            st = path.stat()
            if now - st.st_mtime < grace_s:
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
        report.git_bytes = _git_gc(ctx, dry_run, grace_s)
        if not dry_run:
            store.objects.clean_tmp(grace_s)
    _docker(ctx, report, dry_run)
    return report


def _scratch(ctx: ProjectContext, now: float, grace_s: float, dry_run: bool) -> int:
    freed = 0
    tmp = ctx.store.path("tmp")
    if not tmp.is_dir():
        return 0
    for entry in tmp.iterdir():
        if entry.name.startswith("rerun-") and now - entry.stat().st_mtime >= grace_s:
            freed += _size(entry)
            if not dry_run:
                shutil.rmtree(entry, ignore_errors=True)
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
