"""Reading a run's series (datmo.core.storage.series) by range, at the detail a chart
can show: a view of any range costs about the same whatever the series' length.

A range of a few times more points than the chart's width is read as it is; a longer
one is cut into one bucket per pixel column and each bucket gives its minimum and
maximum (the min/max envelope, which keeps every spike). The buckets are made from the
stored summaries of 16, 256, ... points: the range is covered by whole blocks of the
coarsest level that still gives each bucket several of them, and its ragged ends by
finer ones, so only a few thousand summaries are read, never the points themselves.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datmo.core.storage import seriesfast
from datmo.core.storage.series import FANOUT, LEVELS, POINT, SUMMARY, folder, manifest
from datmo.core.storage.store import Store

_DOUBLE = struct.Struct("<d")
FAST = True  # numpy's envelope when it is installed (tests turn it off to check the loop)


@dataclass
class View:
    """Points to draw: x, y, and how they were made."""

    x: list[float] = field(default_factory=list)
    y: list[float | None] = field(default_factory=list)
    total: int = 0  # points in the whole series
    shown: int = 0  # points of the series in the range asked for
    level: int = 0  # 0: the points themselves; k: envelopes of blocks of 16**k

    def to_dict(self) -> dict[str, Any]:
        return vars(self).copy()

    def packed(self) -> dict[str, Any]:
        """x and y as base64 of little-endian doubles (NaN for a gap): a browser reads
        them into a Float64Array at once, where JSON numbers are parsed one by one."""
        import base64
        import sys

        xs = array("d", self.x)
        ys = array("d", [math.nan if v is None else v for v in self.y])
        if sys.byteorder != "little":
            xs.byteswap()
            ys.byteswap()
        doc = {k: v for k, v in vars(self).items() if k not in ("x", "y")}
        doc["x64"] = base64.b64encode(xs.tobytes()).decode()
        doc["y64"] = base64.b64encode(ys.tobytes()).decode()
        return doc


class Reader:
    """One series' files, read with pread (no lock: the manifest's counts are whole)."""

    def __init__(self, store: Store, run_id: str, name: str) -> None:
        meta = manifest(store, run_id).get("series", {}).get(name)
        self.n = int(meta["n"]) if meta else 0
        self.steps = bool(meta and meta["steps"])
        self.times = bool(meta and meta["times"])
        self.base = folder(store, run_id) / (meta["file"] if meta else "-")
        self._fds: dict[str, int] = {}
        self._map: mmap.mmap | None = None

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, suffix: str, offset: int, size: int) -> array[float]:
        fd = self._fds.get(suffix)
        if fd is None:
            fd = self._fds[suffix] = os.open(Path(f"{self.base}{suffix}"), os.O_RDONLY)
        out = array("d")
        out.frombytes(os.pread(fd, size, offset))
        return out

    def points(self, start: int = 0, end: int | None = None) -> array[float]:
        """Raw (step, value, time) triples of points [start, end)."""
        end = self.n if end is None else min(end, self.n)
        if end <= start:
            return array("d")
        return self._read(".f64", start * POINT, (end - start) * POINT)

    def mapped(self) -> mmap.mmap:
        """The points file's committed part, mapped (read without a system call each)."""
        if self._map is None:
            fd = self._fds.get(".f64")
            if fd is None:
                fd = self._fds[".f64"] = os.open(Path(f"{self.base}.f64"), os.O_RDONLY)
            self._map = mmap.mmap(fd, self.n * POINT, prot=mmap.PROT_READ)
        return self._map

    def x_at(self, i: int, axis: str) -> float:
        """One point's x."""
        if axis != "time" and not self.steps:
            return float(i)
        offset = i * POINT + (16 if axis == "time" else 0)
        return float(_DOUBLE.unpack_from(self.mapped(), offset)[0])

    def ordered(self, axis: str) -> bool:
        return self.times if axis == "time" else True  # steps, or else the index

    def index_of(self, x: float, axis: str, right: bool = False) -> int:
        """The first point whose x is >= x (> x with right): a binary search."""
        lo, hi = 0, self.n
        while lo < hi:
            mid = (lo + hi) // 2
            v = self.x_at(mid, axis)
            if v < x or (right and v == x):
                lo = mid + 1
            else:
                hi = mid
        return lo

    def summaries(self, level: int, start: int, end: int) -> array[float]:
        """Summaries [start, end) of a level: (index of min, min, index of max, max)."""
        if level == 0:
            pts = self.points(start, end)
            out = array("d")
            for j in range(len(pts) // 3):
                v = pts[3 * j + 1]
                out.extend((start + j, v, start + j, v))
            return out
        return self._read(f".L{level}", start * SUMMARY, (end - start) * SUMMARY)


def _cover(i0: int, i1: int, level: int, n: int) -> list[tuple[int, int, int]]:
    """(level, first, end) pieces that cover points [i0, i1) with the coarsest whole
    blocks there are; only complete blocks of a series of n points exist."""
    if level == 0 or i1 <= i0:
        return [(0, i0, i1)] if i1 > i0 else []
    size = FANOUT**level
    b0 = -(-i0 // size)
    b1 = min(i1 // size, n // size)
    if b1 <= b0:
        return _cover(i0, i1, level - 1, n)
    return [
        *_cover(i0, b0 * size, level - 1, n),
        (level, b0, b1),
        *_cover(b1 * size, i1, level - 1, n),
    ]


def window(
    store: Store,
    run_id: str,
    name: str,
    axis: str = "step",
    lo: float | None = None,
    hi: float | None = None,
    width: int = 1000,
) -> View:
    """The points of a series to draw in a chart width pixels wide, between x=lo and
    x=hi (None: the ends) on the axis "step" (the index where steps are missing) or
    "time"."""
    width = max(10, min(int(width), 10_000))
    with Reader(store, run_id, name) as r:
        view = View(total=r.n)
        i0, i1 = 0, r.n
        if r.ordered(axis):
            if lo is not None and math.isfinite(lo):
                i0 = max(0, r.index_of(lo, axis) - 1)  # one point beyond: lines reach the edge
            if hi is not None and math.isfinite(hi):
                i1 = min(r.n, r.index_of(hi, axis, right=True) + 1)
        view.shown = max(0, i1 - i0)
        if view.shown <= width:
            pts = r.points(i0, i1)
            for j in range(len(pts) // 3):
                x = pts[3 * j + 2] if axis == "time" else pts[3 * j] if r.steps else i0 + j
                view.x.append(x)
                view.y.append(_num(pts[3 * j + 1]))
            return view
        # Each bucket spans two pixel columns and gives its min and max: at most `width`
        # points, as many as a short series drawn whole.
        buckets = max(1, width // 2)
        per = view.shown / buckets  # points per bucket
        level = min(LEVELS, int(math.log(per / 2, FANOUT))) if per >= 2 * FANOUT else 0
        view.level = level
        pieces = _cover(i0, i1, level, r.n)
        if FAST and seriesfast.available():
            view.x, view.y = seriesfast.envelope(r, pieces, i0, per, buckets, axis)
            return view
        lows: list[tuple[float, float] | None] = [None] * buckets
        highs: list[tuple[float, float] | None] = [None] * buckets
        for lvl, first, end in pieces:
            if lvl == level and end - first > 64:
                if lvl == 0:  # the points themselves: each its own min and max
                    values = r.points(first, end)[1::3]
                    where = array("d", range(first, end))
                    cols = (where, values, where, values)
                else:
                    s = r.summaries(lvl, first, end)
                    cols = (s[0::4], s[1::4], s[2::4], s[3::4])
                _chunked(cols, i0, per / FANOUT**lvl, (per, buckets), lows, highs)
            else:
                _one_by_one(r.summaries(lvl, first, end), i0, per, buckets, lows, highs)
        for low, high in zip(lows, highs, strict=True):
            pair = sorted({p for p in (low, high) if p is not None})
            for i, v in pair:
                view.x.append(r.x_at(int(i), axis))
                view.y.append(_num(v))
        return view


Slots = list[tuple[float, float] | None]


def _keep(slots: Slots, b: int, i: float, v: float, low: bool) -> None:
    cur = slots[b]
    if cur is None or (v < cur[1] if low else v > cur[1]):
        slots[b] = (i, v)


def _one_by_one(s: array[float], i0: int, per: float, n: int, lows: Slots, highs: Slots) -> None:
    """Summaries into buckets one at a time (the ragged ends: a few dozen)."""
    for j in range(len(s) // 4):
        imin, vmin, imax, vmax = s[4 * j], s[4 * j + 1], s[4 * j + 2], s[4 * j + 3]
        if vmin != vmin:  # NaN: a block of no numbers
            continue
        _keep(lows, min(n - 1, int((imin - i0) / per)), imin, vmin, True)
        _keep(highs, min(n - 1, int((imax - i0) / per)), imax, vmax, False)


if TYPE_CHECKING:  # array[float] is not subscriptable at run time on Python 3.10 and 3.11
    Columns = tuple[array[float], array[float], array[float], array[float]]


def _chunked(
    cols: Columns,  # (index of min, min, index of max, max) of each summary
    i0: int,
    blocks: float,
    shape: tuple[float, int],
    lows: Slots,
    highs: Slots,
) -> None:
    """The long middle run of summaries (whole blocks of one level): each bucket's share
    of about `blocks` summaries found with C-speed min(), max() and index() over slices,
    not a Python step per summary."""
    per, n = shape
    idx_min, mins, idx_max, maxs = cols
    count = len(mins)
    total = sum(mins) + sum(maxs)
    if total != total:  # a NaN (or infinities) inside: the careful way
        s = array("d")
        for j in range(count):
            s.extend((idx_min[j], mins[j], idx_max[j], maxs[j]))
        _one_by_one(s, i0, per, n, lows, highs)
        return
    step = max(1, int(blocks))
    for a in range(0, count, step):
        b = min(count, a + step)
        lo = min(mins[a:b])
        k = mins.index(lo, a, b)
        _keep(lows, min(n - 1, int((idx_min[k] - i0) / per)), idx_min[k], lo, True)
        hi = max(maxs[a:b])
        k = maxs.index(hi, a, b)
        _keep(highs, min(n - 1, int((idx_max[k] - i0) / per)), idx_max[k], hi, False)


def _num(v: float) -> float | None:
    return v if math.isfinite(v) else None  # JSON has no NaN; a gap in the line


def full(store: Store, run_id: str, name: str) -> list[list[Any]]:
    """Every point of a series as [step, value, time] (step None where none was given)."""
    with Reader(store, run_id, name) as r:
        pts = r.points()
    out: list[list[Any]] = []
    for j in range(len(pts) // 3):
        s, v, t = pts[3 * j], pts[3 * j + 1], pts[3 * j + 2]
        step = None if s != s else int(s) if s.is_integer() else s
        out.append([step, v if v == v else None, t])
    return out


def names(store: Store, run_id: str) -> list[str]:
    """The series stored for a run ("m:KEY" logged, "c:KEY" captured)."""
    return sorted(manifest(store, run_id).get("series", {}))


def count(store: Store, run_id: str, name: str) -> int:
    meta = manifest(store, run_id).get("series", {}).get(name)
    return int(meta["n"]) if meta else 0
