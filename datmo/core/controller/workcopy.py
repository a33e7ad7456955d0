"""A run's working copy: a folder of its own under `.datmo/work/`, filled from its
before snapshot, where its task runs and from which its after snapshot is taken.

Queued runs, sweeps, reruns and `datmo run --isolated` work in one, so you can go on
editing (or check out another snapshot) while they run, and nothing they write appears
in your tree. It holds what the snapshot stores and nothing else: folders that
`.datmoignore` leaves out are not there (pass such inputs with `--data`).

Stored files come from the object store as reflink clones where the filesystem has them
(XFS, Btrfs: no space, no time per file) and as copies elsewhere (ext4: their full
size). Never hard links: a file in the store must not be writable through a run's
folder, even by a task running as root, and a checkpoint rewritten in place must not
change any snapshot. The folder is new and private, so files are written straight to
their names (no temporary file and rename per file, no fsync: a copy a crash cut
short belongs to a run that ends LOST, and is made anew).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from datmo.core.controller.checkout import check_paths, state_of
from datmo.core.entity.snapshot import Snapshot
from datmo.core.storage.fsutil import Owner, chown
from datmo.core.storage.project import ProjectContext
from datmo.core.tree.state import CODE_LINK_MODE, TreeState

FOLDER = "work"  # in .datmo


def relpath(run_id: str) -> str:
    """The working copy's path relative to the project, as a run records it."""
    return f".datmo/{FOLDER}/{run_id}"


class Blobs:
    """Code blobs by id, kept for the next working copy: a worker fills many copies of
    one tree, and a blob's id is its content, so a kept blob never goes stale."""

    def __init__(self, limit: int = 64 << 20) -> None:
        self.limit, self.size = limit, 0
        self.kept: dict[str, bytes] = {}

    def read(self, ctx: ProjectContext, sha: str) -> bytes:
        data = self.kept.get(sha)
        if data is None:
            data = ctx.store.git.read_object(sha)[1]
            if self.size + len(data) <= self.limit:
                self.kept[sha] = data
                self.size += len(data)
        return data


def make(ctx: ProjectContext, snap: Snapshot, run_id: str, blobs: Blobs | None = None) -> str:
    """Write the snapshot into a new working copy for the run; its relative path."""
    if snap.files_pending:  # pulled with --no-files: its files come now, from its remote
        from datmo.core.controller import pull

        snap = pull.ensure_files(ctx, snap)
    rel = relpath(run_id)
    target = ctx.root / rel
    if target.exists():
        shutil.rmtree(target)  # a copy left by an attempt that did not start: made anew
    try:
        fill(ctx, state_of(ctx, snap), target, ctx.store.owner, blobs or Blobs(0))
    except BaseException:
        remove(ctx, rel)
        raise
    return rel


def fill(
    ctx: ProjectContext, state: TreeState, target: Path, owner: Owner | None, blobs: Blobs
) -> None:
    """Write a stored state into target, a folder that does not exist yet."""
    check_paths(state)  # plain relative paths, none under a symlink
    links = dict(state.links)
    code = {}
    for path, (mode, sha) in state.code.items():
        if mode == CODE_LINK_MODE:
            links[path] = os.fsdecode(blobs.read(ctx, sha))
        else:
            code[path] = (mode, sha)
    _folders(target, [*code, *state.files, *links], owner)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for path, (mode, sha) in code.items():
        data = blobs.read(ctx, sha)
        out = os.path.join(target, path)
        fd = os.open(out, flags, 0o755 if mode == "100755" else 0o644)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        chown(out, owner)
    for path, (digest, _, fmode) in state.files.items():
        ctx.store.objects.place(digest, target / path, fmode, owner)
    for path, where in links.items():  # last: nothing is written through a link
        os.symlink(where, target / path)
        chown(target / path, owner)


def _folders(target: Path, paths: list[str], owner: Owner | None) -> None:
    wanted = {""}
    for path in paths:
        parent = path.rpartition("/")[0]
        while parent not in wanted:
            wanted.add(parent)
            parent = parent.rpartition("/")[0]
    for folder in sorted(wanted):  # parents first
        if folder:
            os.mkdir(target / folder)
        else:
            target.mkdir(parents=True)
        chown(target / folder, owner)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def remove(ctx: ProjectContext, rel: str) -> None:
    """The working copy, and the throwaway stat cache its after snapshot used."""
    folder = ctx.root / rel
    shutil.rmtree(folder, ignore_errors=True)
    Path(folder.parent, f".{folder.name}.stat").unlink(missing_ok=True)
