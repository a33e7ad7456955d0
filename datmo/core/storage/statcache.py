"""Stat cache: lets a re-snapshot of an unchanged tree skip hashing (like git's index).

An entry maps a relative posix path to the stat fields seen when the file was
hashed, plus the digest. It is trusted only if every field still matches and
the file's mtime is clearly older than the moment we started reading it: a
write in the same timestamp tick as our read would leave size and mtime
unchanged ("racy git"), so such an entry is a miss until it is re-recorded later.
A tick is taken to be 20 ms, or 2 s for a whole-second mtime (see is_racy).

On disk: a header, then a marshal dump with, per algorithm, a path -> row
dict, the raw digests in one blob and the numbers in one int64 array. Columns
rather than a tuple per entry make 100,000 entries load three to four times
faster (about 30 ms). The framing (Python version, byte order, crc32) is
cachefile.py's; any mismatch or damage means an empty cache.
Concurrent datmo processes may both save: last writer wins, which is safe
because every entry is re-validated against stat.
"""

from __future__ import annotations

import contextlib
import os
from array import array
from collections.abc import Callable, Iterable
from pathlib import Path

from datmo.core.storage import cachefile
from datmo.core.storage.fsutil import Owner
from datmo.core.util.probe import is_racy

FORMAT_VERSION = 3
_MAGIC = b"DATMOSC\n"
_COLS = 6  # size, mtime_ns, ctime_ns, ino, mode, recorded_ns
_U64 = 1 << 64


def _miss(relpath: str, st: os.stat_result) -> None:
    return None


def _s64(n: int) -> int:
    # st_ino is unsigned 64-bit; store the bit pattern in a signed column.
    return n - _U64 if n >= 1 << 63 else n


class _Table:
    """The entries of one algorithm, column-wise."""

    __slots__ = ("digests", "index", "nums", "width")

    def __init__(self, index: dict[str, int], width: int, digests: bytes, nums: array[int]) -> None:
        self.index = index  # relpath -> row
        self.width = width  # digest size in bytes, the same for every row
        self.digests = bytearray(digests)
        self.nums = nums

    def dump(self) -> tuple[dict[str, int], int, bytes, bytes]:
        return self.index, self.width, bytes(self.digests), self.nums.tobytes()

    def keep_only(self, keep: set[str]) -> bool:
        kept = [(p, i) for p, i in self.index.items() if p in keep]
        if len(kept) == len(self.index):
            return False
        w, nums, digests = self.width, array("q"), bytearray()
        for _, i in kept:
            nums.extend(self.nums[i * _COLS : (i + 1) * _COLS])
            digests += self.digests[i * w : (i + 1) * w]
        self.index = {p: row for row, (p, _) in enumerate(kept)}
        self.nums, self.digests = nums, digests
        return True


class StatCache:
    def __init__(self, path: Path, owner: Owner | None = None) -> None:
        self.path = path
        self.owner = owner
        self._tables: dict[str, _Table] | None = None  # loaded on first use
        self._dirty = False

    def lookup(self, relpath: str, st: os.stat_result, algo: str) -> str | None:
        """The recorded digest if the file is provably unchanged since it was hashed."""
        return self.finder(algo)(relpath, st)

    def finder(self, algo: str) -> Callable[[str, os.stat_result], str | None]:
        """lookup for one algorithm, with the table bound: called once per file of a
        100,000-file tree, where a method call and a table fetch per file add up."""
        t = self._load().get(algo)
        if t is None:
            return _miss
        index, nums, digests, width = t.index, t.nums, t.digests, t.width

        def find(relpath: str, st: os.stat_result) -> str | None:
            row = index.get(relpath)
            if row is None:
                return None
            b = row * _COLS
            if (
                nums[b] != st.st_size
                or nums[b + 1] != st.st_mtime_ns
                or nums[b + 2] != st.st_ctime_ns
                or nums[b + 3] != _s64(st.st_ino)
                or nums[b + 4] != st.st_mode
                or is_racy(st.st_mtime_ns, nums[b + 5])  # may have changed as it was read
            ):
                return None
            return digests[row * width : (row + 1) * width].hex()

        return find

    def record(
        self, relpath: str, st: os.stat_result, algo: str, digest: str, recorded_ns: int
    ) -> None:
        """Remember a hex digest for relpath. st is the stat that goes with the hash and
        recorded_ns the time.time_ns() taken BEFORE the file was read."""
        raw = bytes.fromhex(digest)
        tables = self._load()
        t = tables.get(algo)
        if t is None:
            t = tables[algo] = _Table({}, len(raw), b"", array("q"))
        if len(raw) != t.width:
            raise ValueError(f"{algo} digest of {len(raw)} bytes, expected {t.width}")
        fields = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, _s64(st.st_ino), st.st_mode)
        row = t.index.get(relpath)
        if row is None:
            t.index[relpath] = len(t.index)
            t.nums.extend((*fields, recorded_ns))
            t.digests += raw
        else:
            b, w = row * _COLS, t.width
            if tuple(t.nums[b : b + _COLS]) == (*fields, recorded_ns):
                return
            t.nums[b : b + _COLS] = array("q", (*fields, recorded_ns))
            t.digests[row * w : (row + 1) * w] = raw
        self._dirty = True

    def prune(self, keep: Iterable[str]) -> None:
        """Drop every path not in keep (files deleted from the tree)."""
        keep_set = keep if isinstance(keep, set) else set(keep)
        for t in self._load().values():
            if t.keep_only(keep_set):
                self._dirty = True

    def save(self) -> None:
        """Write the cache atomically if it changed. Losing it only costs time, so a
        full or read-only disk is not an error here."""
        if not self._dirty or self._tables is None:
            return
        data = {algo: t.dump() for algo, t in self._tables.items()}
        if cachefile.write(self.path, _MAGIC, FORMAT_VERSION, data, self.owner):
            self._dirty = False

    def _load(self) -> dict[str, _Table]:
        if self._tables is None:
            self._tables = _read(self.path)
        return self._tables


def _read(path: Path) -> dict[str, _Table]:
    """The cache on disk, or {} when it is missing, damaged or in another format."""
    data = cachefile.read(path, _MAGIC, FORMAT_VERSION)
    if not isinstance(data, dict):
        return {}
    tables: dict[str, _Table] = {}
    with contextlib.suppress(Exception):  # not the shape written: a buggy writer
        for algo, (index, width, digests, nums_bytes) in data.items():
            nums = array("q")
            nums.frombytes(nums_bytes)
            rows = len(index)
            if len(digests) != rows * width or len(nums) != rows * _COLS:
                return {}
            tables[algo] = _Table(index, width, digests, nums)
        return tables
    return {}
