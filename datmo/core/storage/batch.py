"""A batch of objects made durable together (ObjectStore.batch, issue 17).

Storing 20,000 small files with an fsync, a rename and a folder fsync each spends
most of its time waiting on the disk; a batch renames each object into place at
once and makes them all durable with one pass at its end: syncfs(2) on the store's
filesystem where Linux has it (fsutil.syncfs), else an fsync of each object and then
of the folders their names went into. Objects a batch found already stored count
too: another process may have put them there in a batch of its own, not yet synced.
"""

from __future__ import annotations

from pathlib import Path

from datmo.core.storage.fsutil import Deferred, make_durable


class Batch(Deferred):
    """What a batch stored: objects (appended from any thread; list.append is atomic)
    and the folders their names went into."""

    def flush(self, root: Path) -> None:
        make_durable(self.files, {*self.folders, str(root)})
