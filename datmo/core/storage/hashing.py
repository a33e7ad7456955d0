"""Hashing and copying file contents: BLAKE3 in one pass, clones where possible.

The object store builds on these; they know nothing of its layout.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import mmap
import os
from collections.abc import Callable
from pathlib import Path

from blake3 import blake3

from datmo.errors import DatmoError

HASH_NAME = "blake3"
HASH_CHUNK = 1 << 20  # 1 MiB: fits in L2, so a chunk is hashed while still in cache
THREAD_MIN = 8 << 20  # below this a hashing thread costs more than it saves
# Files this big go into the store with O_DIRECT: not through the page cache, which
# a snapshot of a 50 GB data set would otherwise flush of everything else, and which
# costs the most on some machines (see docs/performance.md: 1 GiB took 1.7-3.7 s
# through the page cache on the benchmark VM, 0.5-0.9 s direct). In 8 MiB writes.
DIRECT_MIN = 64 << 20
DIRECT_CHUNK = 8 << 20
_BLOCK = 4096  # O_DIRECT writes whole blocks from aligned memory (mmap is page-aligned)
FICLONE = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h
_NO_REFLINK = frozenset(
    {errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.ENOSYS, errno.EPERM}
)
# ... and "no in-kernel copy between these files": copy through Python instead.
_NO_KERNEL_COPY = frozenset({errno.EXDEV, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS})
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
OnError = Callable[[OSError], DatmoError]


def hash_file(path: Path) -> str:
    """blake3 hex digest of a file, read in 1 MiB chunks into reused buffers."""
    with open(path, "rb", buffering=0) as f:
        return _hash_fd(f.fileno(), _reraise)


def hash_bytes(data: bytes) -> str:
    return str(blake3(data, max_threads=1).hexdigest())


def reflink(src_fd: int, dst_fd: int) -> bool:
    """Make dst a copy-on-write clone of src; False where the filesystem cannot."""
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
        return True
    except OSError as e:
        if e.errno in _NO_REFLINK:
            return False
        raise


def _reraise(e: OSError) -> DatmoError:
    raise e


def _hash_fd(fd: int, on_read: OnError) -> str:
    """Hash fd from its current offset to EOF."""
    return _copy_hashing(fd, None, on_read, _reraise, os.fstat(fd).st_size)[0]


SETTLED_NS = 20_000_000  # as the stat cache: older than this, a change would show in the stat


def _hash_clone(
    sfd: int, cfd: int, st: os.stat_result, cloned_at: int, on_read: OnError, on_write: OnError
) -> tuple[str, int]:
    """The digest of a clone's bytes.

    A settled source (not modified for a while, and unchanged while we read it) has
    the clone's bytes, and its pages are usually in memory while the new clone's are
    not: hashing it avoids reading the file from disk again. Anything less certain
    hashes the clone itself, which is private to us.
    """
    settled = max(st.st_mtime_ns, st.st_ctime_ns) < cloned_at - SETTLED_NS
    if settled:
        os.lseek(sfd, 0, os.SEEK_SET)
        digest, size = _copy_hashing(sfd, None, on_read, _reraise, st.st_size)
        after = os.fstat(sfd)
        same = (after.st_size, after.st_mtime_ns, after.st_ctime_ns, after.st_ino)
        if size == st.st_size and same == (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino):
            return digest, size
    return _copy_hashing(cfd, None, on_write, _reraise, st.st_size)


def _write_all(fd: int, chunk: memoryview, on_write: OnError) -> None:
    try:
        while chunk:  # os.write may write less than asked (signal, nearly full disk)
            chunk = chunk[os.write(fd, chunk) :]
    except OSError as e:
        raise on_write(e) from e


def _set_direct(fd: int, on: bool) -> bool:
    """Turn O_DIRECT on or off for fd; whether it is now on."""
    if not hasattr(os, "O_DIRECT"):
        return False
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT if on else flags & ~os.O_DIRECT)
    except OSError:
        if on:
            return False  # the filesystem does not offer it: the page cache it is
        raise
    return on


def _chunk(size_hint: int) -> int:
    """A buffer for a file of about this size: a 50 kB file needs no zeroed 1 MiB
    (20,000 of them cost half a second); one that grew is read in more pieces."""
    return min(HASH_CHUNK, max(64 << 10, (size_hint + 4095) & ~4095))


def _copy_hashing(
    src_fd: int, dst_fd: int | None, on_read: OnError, on_write: OnError, size_hint: int
) -> tuple[str, int]:
    """Copy src to dst in one pass, hashing exactly the bytes dst holds (no dst: just hash)."""
    h = blake3(max_threads=1)
    total = 0
    direct = dst_fd is not None and size_hint >= DIRECT_MIN and _set_direct(dst_fd, True)
    kernel = not direct and dst_fd is not None and hasattr(os, "copy_file_range")  # Linux

    def write(buf: memoryview) -> None:
        """Into dst at offset `total`; a refused direct write is made again, buffered."""
        nonlocal direct
        assert dst_fd is not None
        if direct and len(buf) % _BLOCK:
            direct = _set_direct(dst_fd, False)  # the tail: not whole blocks
        if not direct:
            _write_all(dst_fd, buf, on_write)
            return
        try:
            _write_all(dst_fd, buf, _reraise)
        except OSError as e:
            if e.errno != errno.EINVAL:  # EINVAL: this filesystem takes no O_DIRECT writes
                raise on_write(e) from e
            direct = _set_direct(dst_fd, False)
            os.lseek(dst_fd, total, os.SEEK_SET)
            _write_all(dst_fd, buf, on_write)

    def fill(buf: bytearray | mmap.mmap) -> int:
        """Put the next chunk in buf, and in dst if there is one; 0 at the end."""
        nonlocal kernel
        if kernel and dst_fd is not None:
            try:
                n = os.copy_file_range(src_fd, dst_fd, len(buf))
            except OSError as e:
                if total or e.errno not in _NO_KERNEL_COPY:
                    raise (on_write if e.errno in _FULL else on_read)(e) from e
                n = -1
            # copy_file_range copies page to page in the kernel, far cheaper than
            # write() here; reading back our private copy keeps the hash honest.
            # (Some kernels return 0 for files of special filesystems: copy those.)
            if n > 0 or (n == 0 and (total or not size_hint)):
                try:
                    if os.preadv(dst_fd, [memoryview(buf)[:n]], total) == n:
                        return n
                    raise OSError(errno.EIO, "copy shorter than written")
                except OSError as e:
                    raise on_write(e) from e
            kernel = False
        try:
            n = os.readv(src_fd, [buf])
        except OSError as e:
            raise on_read(e) from e
        if dst_fd is not None and n:
            write(memoryview(buf)[:n])
        return n

    # Big files: blake3 releases the GIL, so one worker hashes chunk i while this
    # thread copies the next (a third less time than serial, and reads of a
    # fresh clone overlap with hashing). One worker keeps the updates in order;
    # a buffer is reused only once hashed. Small files: no thread, one buffer.
    threaded = size_hint >= THREAD_MIN
    count = 3 if threaded else 1
    bufs: list[bytearray | mmap.mmap] = (
        [mmap.mmap(-1, DIRECT_CHUNK) for _ in range(count)]
        if direct
        else [bytearray(_chunk(size_hint)) for _ in range(count)]
    )
    # Imported here: a few ms that only files big enough for a hashing thread pay.
    from concurrent.futures import Future, ThreadPoolExecutor

    pending: list[Future[object] | None] = [None] * len(bufs)
    with ThreadPoolExecutor(1) if threaded else contextlib.nullcontext() as pool:
        for i in itertools.cycle(range(len(bufs))):
            if (prev := pending[i]) is not None:
                prev.result()
            if not (n := fill(bufs[i])):
                break
            if pool is None:
                h.update(memoryview(bufs[i])[:n])
            else:
                pending[i] = pool.submit(h.update, memoryview(bufs[i])[:n])
            total += n
        for f in pending:
            if f is not None:
                f.result()
    return str(h.hexdigest()), total


def copy_plain(src: int, dst: int) -> None:
    """src into dst, page to page in the kernel where it can (copy_file_range)."""
    while True:
        try:
            n = os.copy_file_range(src, dst, 1 << 30)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            while chunk := os.read(src, 1 << 20):
                _write_all(dst, memoryview(chunk), _reraise)
            return
        if n == 0:
            return
