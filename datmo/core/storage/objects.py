"""Content-addressed object store: the "files" part of snapshots.

Objects live at ``root/ab/cdef...`` (blake3 hex digest, first two characters
as the folder) and are read-only. Every write goes to a temp file in
``root/tmp`` (same filesystem, so the final rename is atomic) and the digest is
always computed from the bytes we wrote, never from the user's file, so a
script that rewrites its output while we copy cannot make an object lie about
its content. We never hard-link the working tree to the store: a script doing
``open(path, 'wb')`` would silently rewrite every snapshot holding that file.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import stat
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from blake3 import blake3

from datmo.core.storage.batch import Batch
from datmo.core.storage.fsutil import Deferred, Owner, chown, fsync_dir, makedirs, temp_file
from datmo.core.storage.fsutil import pending as deferred_block
from datmo.core.storage.hashing import (
    _copy_hashing,
    _hash_clone,
    _hash_fd,
    _reraise,
    _write_all,
    copy_plain,
    hash_bytes,
    reflink,
)
from datmo.core.storage.objerrors import object_error, read_error, write_error
from datmo.errors import CorruptStore, DatmoError, DiskFull

SPACE_MARGIN = 16 << 20  # keep some room so datmo's own records can still be written
_DIGEST = re.compile(r"[0-9a-f]{64}\Z")
_HEX = frozenset("0123456789abcdef")
_OPEN_RO = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def _human(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} B"


def _nofollow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)


class ObjectStore:
    """Read-only blobs under .datmo/objects, named by the blake3 of their bytes."""

    def __init__(self, root: Path, owner: Owner | None = None) -> None:
        self.root = root
        self._root = os.fspath(root)
        self.owner = owner
        self.tmp = root / "tmp"
        self._reflinks: bool | None = None
        self._no_clone: set[tuple[int, int]] = set()  # see clone()
        self._checked: set[str] = set()  # objects this process has placed, hash checked
        self._batch: Batch | None = None  # see batch()

    def path(self, digest: str) -> Path:
        return Path(self.where(digest))

    def where(self, digest: str) -> str:
        """path() as a str, for the calls made per object (pathlib costs ~20 us a call).
        Digests come from records on disk: anything that could escape root is refused."""
        if not _DIGEST.match(digest):
            raise CorruptStore(f"invalid object id {digest!r} in a .datmo record; run 'datmo fsck'")
        return f"{self._root}/{digest[:2]}/{digest[2:]}"

    def has(self, digest: str) -> bool:
        try:
            return stat.S_ISREG(os.lstat(self.where(digest)).st_mode)
        except FileNotFoundError:
            return False

    def size(self, digest: str) -> int:
        try:
            return os.lstat(self.path(digest)).st_size
        except FileNotFoundError as e:
            raise object_error(digest, e) from None

    # -- writing ------------------------------------------------------------

    def put_file(self, src: Path, expect: str | None = None) -> tuple[str, int]:
        """Store a regular file; returns (digest, size) of the bytes stored. expect: the
        digest the bytes must have (a pulled object); CorruptStore, nothing stored, if not."""
        on_read = functools.partial(read_error, src=src)
        on_write = functools.partial(write_error, doing=f"storing {src} in {self.root}")
        try:
            # O_NONBLOCK so a FIFO cannot hang the open; it is rejected just below.
            sfd = os.open(src, _OPEN_RO | os.O_NONBLOCK)
        except OSError as e:
            raise on_read(e) from e
        try:
            st = os.fstat(sfd)
            if not stat.S_ISREG(st.st_mode):
                raise DatmoError(f"cannot store {src}: not a regular file")
            os.set_blocking(sfd, True)
            with self._temp() as (fd, tmp):
                cloned_at = time.time_ns()
                if self.reflinks_supported() and reflink(sfd, fd):
                    digest, size = _hash_clone(sfd, fd, st, cloned_at, on_read, on_write)
                else:
                    digest, size = _copy_hashing(sfd, fd, on_read, on_write, st.st_size)
                if expect is not None and digest != expect:
                    raise CorruptStore(f"{src} does not hold object {expect[:12]} (hash mismatch)")
                self._commit(fd, tmp, digest, size)
        except OSError as e:  # clone, fsync or rename on the store side
            raise on_write(e) from e
        finally:
            os.close(sfd)
        return digest, size

    def put_bytes(self, data: bytes) -> str:
        digest = hash_bytes(data)
        if self.has(digest):
            batch = self._later()
            if batch is not None:  # another process may have stored it unsynced
                batch.files.append(self.where(digest))
            return digest
        try:
            with self._temp() as (fd, tmp):
                _write_all(fd, memoryview(data), _reraise)
                self._commit(fd, tmp, digest, len(data))
        except OSError as e:
            raise write_error(e, f"writing to {self.root}") from e
        return digest

    def receive(self, chunks: Iterable[bytes], expect: str, where: str) -> int:
        """Store an object that arrives in pieces (over ssh, from S3, from a bundle); its
        bytes must hash to expect, or nothing is stored. Returns its size."""
        h, size = blake3(max_threads=1), 0
        try:
            with self._temp("recv-") as (fd, tmp):
                for chunk in chunks:
                    h.update(chunk)
                    _write_all(fd, memoryview(chunk), _reraise)
                    size += len(chunk)
                if h.hexdigest() != expect:
                    raise CorruptStore(
                        f"object {expect[:12]} from {where} is damaged (hash mismatch); "
                        f"run 'datmo fsck --remote' there"
                    )
                self._commit(fd, tmp, expect, size)
        except OSError as e:
            raise write_error(e, f"writing to {self.root}") from e
        return size

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Store many objects with one durability pass (batch.py) at the end of the block,
        not an fsync per object. Nothing may name an object stored inside (a record, a
        ref, a cache entry) before the block has ended; one left by an error still
        flushes what it stored. Works from any thread; nested blocks are one batch."""
        if self._batch is not None:
            yield
            return
        batch = self._batch = Batch()
        try:
            yield
        except BaseException:
            with contextlib.suppress(OSError):  # the error that ended the block comes first
                batch.flush(self.root)
            raise
        finally:
            self._batch = None
        try:
            batch.flush(self.root)
        except OSError as e:
            raise write_error(e, f"writing to {self.root}") from e

    def _later(self) -> Deferred | None:
        """Where an object's fsyncs wait: this store's batch, the thread's deferred block."""
        return self._batch if self._batch is not None else deferred_block()

    def _commit(self, fd: int, tmp: str, digest: str, size: int) -> None:
        """fsync the temp and rename it into place, or drop it when already stored.
        A stored copy of the wrong size is damaged, so the new one replaces it.
        In a batch the fsyncs wait for its end (batch())."""
        final = self.where(digest)
        folder = os.path.dirname(final)
        batch = self._later()
        with contextlib.suppress(FileNotFoundError):
            if os.lstat(final).st_size == size:
                os.unlink(tmp)
                if batch is not None:  # another process may have stored it unsynced
                    batch.files.append(final)
                return
        if batch is None:
            os.fsync(fd)
        os.fchmod(fd, 0o444)
        new_dir = not os.path.isdir(folder)
        if new_dir:
            makedirs(Path(folder), self.owner)
        os.replace(tmp, final)
        if batch is not None:
            batch.files.append(final)
            batch.folders.add(folder)
            if new_dir:
                batch.folders.add(self._root)
            return
        fsync_dir(Path(folder))
        if new_dir:
            fsync_dir(self.root)

    def _temp(self, prefix: str = "put-") -> contextlib.AbstractContextManager[tuple[int, str]]:
        if not self.tmp.is_dir():
            makedirs(self.tmp, self.owner)
        return temp_file(self.tmp, prefix, self.owner)

    def delete(self, digest: str) -> None:
        # Missing is fine: gc may race another gc. The empty folder stays, since a
        # concurrent put could be about to rename into it.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(digest))

    # -- reading ------------------------------------------------------------

    def read_bytes(self, digest: str) -> bytes:
        try:
            with open(self.path(digest), "rb", buffering=0, opener=_nofollow) as f:
                data = f.read()
        except OSError as e:
            raise object_error(digest, e) from e
        if hash_bytes(data) != digest:
            raise object_error(digest)
        return data

    def verify(self, digest: str) -> bool:
        """True when the object exists and its bytes match its name."""
        try:
            with open(self.path(digest), "rb", buffering=0, opener=_nofollow) as f:
                return _hash_fd(f.fileno(), _reraise) == digest
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.EIO, errno.EISDIR, errno.ELOOP):
                return False
            raise object_error(digest, e) from e

    def iter_digests(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for d in list(os.scandir(self.root)):
            if len(d.name) != 2 or not _HEX.issuperset(d.name) or not d.is_dir():
                continue
            with os.scandir(d.path) as it:
                for f in it:
                    if _DIGEST.match(digest := d.name + f.name):
                        yield digest

    def restore(
        self, digest: str, dest: Path, mode: int = 0o644, owner: Owner | None = None
    ) -> None:
        """Write the object to dest atomically, checking its hash on the way."""
        try:
            sfd = os.open(self.where(digest), _OPEN_RO)
        except OSError as e:
            raise object_error(digest, e) from e
        on_read = functools.partial(object_error, digest)
        on_write = functools.partial(write_error, doing=f"restoring {dest}")
        folder = os.path.dirname(dest)  # str, not Path: this runs once per restored file
        try:
            if not os.path.isdir(folder):
                makedirs(Path(folder), owner)
            with temp_file(folder, ".datmo-restore-", owner) as (fd, tmp):
                # a clone is hashed in place; a copy is hashed as it is written
                st = os.fstat(sfd)
                src, dst = (fd, None) if self.clone(sfd, fd, st.st_dev) else (sfd, fd)
                got, _ = _copy_hashing(src, dst, on_read, on_write, st.st_size)
                if got != digest:
                    raise object_error(digest)
                os.fchmod(fd, mode & 0o7777)  # after the chown in temp_file, which clears setuid
                # rename replaces a symlink at dest itself, never what it points to
                os.replace(tmp, dest)
        except OSError as e:
            raise on_write(e) from e
        finally:
            os.close(sfd)

    def place(self, digest: str, dest: Path, mode: int = 0o644, owner: Owner | None = None) -> None:
        """Write the object to dest, a new file in a folder of ours (a run's working
        copy): a reflink clone where the filesystem has them, else a kernel copy.

        The hash is checked the first time this process places an object; after that
        a clone shares blocks already checked and a copy comes from the same read-only
        object, so a worker that fills a hundred working copies reads a dataset once.
        """
        try:
            sfd = os.open(self.where(digest), _OPEN_RO)
        except OSError as e:
            raise object_error(digest, e) from e
        # read and write: a clone is hashed through its own descriptor
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        on_write = functools.partial(write_error, doing=f"writing {dest}")
        try:
            fd = os.open(dest, flags, 0o600)
        except OSError as e:
            os.close(sfd)
            raise on_write(e) from e
        try:
            chown(dest, owner)
            st = os.fstat(sfd)
            cloned = self.clone(sfd, fd, st.st_dev)
            if digest not in self._checked:
                src, dst = (fd, None) if cloned else (sfd, fd)
                on_read = functools.partial(object_error, digest)
                got, _ = _copy_hashing(src, dst, on_read, on_write, st.st_size)
                if got != digest:
                    raise object_error(digest)
                self._checked.add(digest)
            elif not cloned:
                copy_plain(sfd, fd)
            os.fchmod(fd, mode & 0o7777)
        except BaseException as e:
            with contextlib.suppress(OSError):
                os.unlink(dest)
            if isinstance(e, OSError):
                raise on_write(e) from e
            raise
        finally:
            os.close(fd)
            os.close(sfd)

    # -- space and housekeeping ---------------------------------------------

    def check_space(self, needed_bytes: int) -> None:
        if needed_bytes <= 0:
            return
        where = self.root if self.root.exists() else self.root.parent
        st = os.statvfs(where)
        free = st.f_bavail * st.f_frsize
        # A margin for records and git objects, but never most of a small disk.
        margin = min(SPACE_MARGIN, st.f_blocks * st.f_frsize // 10)
        if free < needed_bytes + margin:
            raise DiskFull(
                f"not enough disk space in {where}: need {_human(needed_bytes)}, "
                f"{_human(free)} free; free some space or remove old snapshots and "
                "run 'datmo gc', then try again"
            )

    def clone(self, sfd: int, fd: int, src_dev: int) -> bool:
        """reflink(sfd, fd), tried once per pair of filesystems that refuses it: ext4
        refuses every file, and asking costs an ioctl per file (issue 17). A refusal
        for a reason of one file's own makes the rest copies: correct, only slower."""
        devs = (src_dev, os.fstat(fd).st_dev)
        if devs in self._no_clone:
            return False
        if reflink(sfd, fd):
            return True
        self._no_clone.add(devs)
        return False

    def reflinks_supported(self) -> bool:
        """Whether the store's filesystem can clone files (probed once per instance)."""
        if self._reflinks is None:
            self._reflinks = False
            with (
                contextlib.suppress(OSError),
                self._temp("probe-") as (a_fd, a),
                self._temp("probe-") as (b_fd, b),
            ):
                os.unlink(a)
                os.unlink(b)
                os.write(a_fd, b"datmo")
                self._reflinks = reflink(a_fd, b_fd)
        return self._reflinks

    def clean_tmp(self, older_than_s: float = 3600) -> None:
        """Remove temp files left by killed processes (a live put keeps its mtime fresh)."""
        limit = time.time() - older_than_s
        if not self.tmp.is_dir():
            return
        for e in list(os.scandir(self.tmp)):
            with contextlib.suppress(FileNotFoundError):
                if e.stat(follow_symlinks=False).st_mtime < limit:
                    os.unlink(e.path)
