"""Reading the files the stat cache cannot vouch for: where each goes, spread over the cores.

A small file is read once, whole: git's own test on those bytes (a NUL in the first
8,000 bytes makes a file binary) decides whether it is code, for the shadow git
repository, or a file, for the object store (issue 17: a data set of small JPEGs
does not belong in git). A large file is copied into the object store, hashing as
it goes. Both release the GIL for most of their time (reads, writes, blake3 and
sha1 on whole buffers), so a few threads keep both cores busy on a tree of many
small files in principle; results come back in the order of the jobs, with a bounded
number in flight, so memory stays at a few files per thread. Measured, they do not
help here yet (MAX_WORKERS below).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datmo.core.shadowgit import format as gitformat
from datmo.errors import DatmoError

if TYPE_CHECKING:
    from datmo.core.storage.objects import ObjectStore
    from datmo.core.tree.scan import Entry

SNIFF = 8000  # git's buffer_is_binary() looks this far for a NUL
PARALLEL_MIN = 32  # fewer reads than this: no threads (starting a pool costs ~1 ms)
# One thread: on the benchmark VM (ext4, 2 cores) 2 or 4 threads made a first snapshot
# of 20,000 x 50 kB files slower, not faster (9.0 -> 14.8 s, 9.1 -> 13.8 s, 6.4 -> 8.5
# s with 2): the time is the kernel's, creating files in one temp folder and renaming
# them out of it, which threads only contend on (issue 17).
MAX_WORKERS = 1
WINDOW = 8  # jobs in flight per worker
CODE, FILE = "code", "file"
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def is_binary(data: bytes) -> bool:
    """git's test: a NUL byte in the first 8,000 bytes."""
    return data.find(b"\0", 0, SNIFF) != -1


@dataclass(frozen=True, slots=True)
class Read:
    """What one read found. kind CODE: `data` holds the bytes to write to git (capture)
    or `key` the blob id already (status); kind FILE: `key` is the blake3 digest."""

    entry: Entry
    kind: str
    key: str | None
    data: bytes | None
    started_ns: int  # time.time_ns() before the read, for the stat cache


class Reader:
    """One description's reads: small files by content, large ones into the store."""

    def __init__(self, top: str, objects: ObjectStore, capture: bool) -> None:
        self.top = top
        self.objects = objects
        self.capture = capture

    def __call__(self, job: tuple[Entry, bool]) -> Read:
        entry, small = job
        full = os.path.join(self.top, entry.path)
        started = time.time_ns()
        try:
            if small:
                return self._small(entry, full, started)
            if self.capture:
                digest, _ = self.objects.put_file(Path(full))
            else:
                from datmo.core.storage.hashing import hash_file

                digest = hash_file(Path(full))
            return Read(entry, FILE, digest, None, started)
        except FileNotFoundError:
            raise DatmoError(
                f"'{entry.path}' vanished while it was being read; try again"
            ) from None
        except PermissionError:
            raise DatmoError(
                f"cannot read '{entry.path}': permission denied; "
                "fix its permissions or add it to .datmoignore"
            ) from None

    def _small(self, entry: Entry, full: str, started: int) -> Read:
        data = _read_small(full)
        if data is None:  # swapped for a symlink since the scan: store it as git does
            return self._code(entry, os.fsencode(os.readlink(full)), started)
        if not is_binary(data):
            return self._code(entry, data, started)
        if self.capture:
            digest = self.objects.put_bytes(data)
        else:
            from datmo.core.storage.hashing import hash_bytes

            digest = hash_bytes(data)
        return Read(entry, FILE, digest, None, started)

    def _code(self, entry: Entry, data: bytes, started: int) -> Read:
        if self.capture:  # written to git by the caller, one thread: the repository is not shared
            return Read(entry, CODE, None, data, started)
        return Read(entry, CODE, gitformat.object_id(b"blob", data), None, started)


def _read_small(full: str) -> bytes | None:
    """A regular file's bytes; None if it is a symlink now. O_NONBLOCK: a fifo put
    in its place is refused below instead of hanging the snapshot."""
    try:
        fd = os.open(full, _OPEN)
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.EMLINK):  # EMLINK: what the BSDs say here
            raise
        return None
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DatmoError(f"cannot save {full}: not a regular file or symlink")
        return f.read()


def workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores))


def read_all(
    fn: Callable[[Any], Read], jobs: Sequence[Any], threads: int | None = None
) -> Iterator[Read]:
    """fn over jobs, in their order: on `threads` threads (default: one per core, up to
    MAX_WORKERS) when there are enough jobs, with at most WINDOW per thread in flight."""
    n = workers() if threads is None else threads
    if n <= 1 or len(jobs) < PARALLEL_MIN:
        yield from map(fn, jobs)
        return
    from concurrent.futures import Future, ThreadPoolExecutor

    pool = ThreadPoolExecutor(n, thread_name_prefix="datmo-read")
    window: deque[Future[Read]] = deque()
    try:
        for job in jobs:
            window.append(pool.submit(fn, job))
            if len(window) >= n * WINDOW:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on an error: no read outlives it
