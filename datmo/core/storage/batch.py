"""A batch of objects made durable together (ObjectStore.batch, issue 17).

Storing 20,000 small files with an fsync, a rename and a folder fsync each spends
most of its time waiting on the disk; a batch renames each object into place at
once and makes them all durable with one pass at its end: syncfs(2) on the store's
filesystem where Linux has it (fsutil.syncfs), else an fsync of each object and then
of the folders their names went into. Objects a batch found already stored count
too: another process may have put them there in a batch of its own, not yet synced.
"""

from __future__ import annotations

import os
from pathlib import Path

from datmo.core.storage.fsutil import fsync_dir, syncfs

_OPEN_RO = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


class Batch:
    """What a batch stored: objects (appended from any thread; list.append is atomic)
    and the folders their names went into."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self.folders: set[str] = set()

    def flush(self, root: Path) -> None:
        if not self.files:
            return
        # syncfs writes every dirty page and inode of the filesystem, names included:
        # with it, an fsync of each folder would add nothing but a disk flush each.
        if root.is_dir() and syncfs(root):
            return
        for path in self.files:
            fd = os.open(path, _OPEN_RO)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for folder in sorted(self.folders, key=len, reverse=True):  # objects/ab before objects/
            fsync_dir(Path(folder))
