"""Stored contents written out as new files, for `checkout --to` (issue 17).

The caller writes into a folder that is new and its own (export.py renames it into
place once everything in it is written and on disk), so each file is created under
its final name with O_EXCL, as `cp` does: no temporary name and rename per file, and
nothing that was there can be overwritten. For a stored object:

- a reflink clone where both filesystems have them (ObjectStore.clone remembers a
  refusal, so ext4 costs one ioctl, not one a file), hashed through the clone itself;
- otherwise one pass: the object's bytes are read into a buffer, hashed, and that
  buffer is written. The bytes hashed are the bytes written, and they must hash to
  the object's name, so every file written is checked, never read back;
- an object whose size is not the one the snapshot recorded is damaged, even when
  its first bytes would have done.

A file that fails its check, or any error (Ctrl-C too), removes the file being
written: no file is left under its name with the wrong bytes. Safe to call from
several threads at once (each has its own buffer).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator

from blake3 import blake3

from datmo.core.storage.fsutil import Owner, chown
from datmo.core.storage.hashing import THREAD_MIN, _copy_hashing, _reraise, _write_all
from datmo.core.storage.objects import ObjectStore
from datmo.core.storage.objerrors import object_error, write_error
from datmo.errors import DatmoError

_NEW = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_RO = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
BUFFER = 1 << 20  # one per thread, reused for every file


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class WriteOut:
    """Writes stored objects, code blobs and symlinks as new files; see the module doc."""

    def __init__(self, objects: ObjectStore, owner: Owner | None) -> None:
        self.objects = objects
        self.owner = owner
        self.umask = _umask()  # read once, before any thread starts
        self._local = threading.local()

    def object(self, digest: str, size: int, dest: str, mode: int) -> None:
        """Write stored object digest (size bytes, as recorded) to dest, a new file."""
        try:
            sfd = os.open(self.objects.where(digest), _OPEN_RO)
        except OSError as e:
            raise object_error(digest, e) from e
        try:
            st = os.fstat(sfd)
            if st.st_size != size:
                raise object_error(digest)
            with self._new(dest, mode, os.O_RDWR) as fd:  # read too: a clone is hashed
                if self.objects.clone(sfd, fd, st.st_dev):
                    got = _copy_hashing(fd, None, _reraise, _reraise, size)[0]
                elif size >= THREAD_MIN:  # big: a hashing thread, O_DIRECT (hashing.py)
                    on_read = functools.partial(object_error, digest)
                    got = _copy_hashing(sfd, fd, on_read, self._on_write(dest), size)[0]
                else:
                    got = self._copy(sfd, fd, size, digest, dest)
                if got != digest:
                    raise object_error(digest)
        finally:
            os.close(sfd)

    def data(self, data: bytes, dest: str, mode: int) -> None:
        """Write bytes (a code blob, checked by git when it was read) to dest, a new file."""
        with self._new(dest, mode, os.O_WRONLY) as fd:
            _write_all(fd, memoryview(data), self._on_write(dest))

    def link(self, target: str, dest: str) -> None:
        try:
            os.symlink(target, dest)
            chown(dest, self.owner)
        except OSError as e:
            raise self._on_write(dest)(e) from e

    def _copy(self, sfd: int, fd: int, size: int, digest: str, dest: str) -> str:
        """size bytes of sfd into fd in one pass, hashing the bytes written."""
        buf = getattr(self._local, "buf", None)
        if buf is None:
            buf = self._local.buf = bytearray(BUFFER)
        h, total, on_write = blake3(max_threads=1), 0, self._on_write(dest)
        while total < size:  # the size was checked: no read is spent on finding the end
            try:
                n = os.readv(sfd, [buf])
            except OSError as e:
                raise object_error(digest, e) from e
            if not n:
                break  # shorter than it was a moment ago: the hash says so
            view = memoryview(buf)[: min(n, size - total)]
            h.update(view)
            _write_all(fd, view, on_write)
            total += len(view)
        return str(h.hexdigest())

    @contextlib.contextmanager
    def _new(self, dest: str, mode: int, access: int) -> Iterator[int]:
        """A new file at dest (fd); closed after the block, removed if the block fails."""
        mode &= 0o7777
        try:
            fd = os.open(dest, access | _NEW, mode & 0o777)
        except OSError as e:
            raise self._on_write(dest)(e) from e
        try:
            try:
                chown(dest, self.owner)
                yield fd
                # open() took the umask off and a chown clears setuid: set the mode exactly
                if mode & self.umask or self.owner is not None or mode & ~0o777:
                    os.fchmod(fd, mode)
            finally:
                os.close(fd)
        except BaseException as e:
            with contextlib.suppress(OSError):
                os.unlink(dest)
            if isinstance(e, OSError):
                raise self._on_write(dest)(e) from e
            raise

    @staticmethod
    def _on_write(dest: str) -> Callable[[OSError], DatmoError]:
        return functools.partial(write_error, doing=f"writing {dest}")
