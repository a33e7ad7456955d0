"""Reading a run's series (datmo.core.storage.series) by range, at the detail a chart
can show: a view of any range costs about the same whatever the series' length.

A range of no more points than the chart's width is read as it is; a longer one is cut
into buckets of two pixel columns and each gives its minimum and maximum (the min/max
envelope, which keeps every spike). The buckets are made from the stored summaries of
16, 256, ... points: the range is covered by whole blocks of the coarsest level whose
groups of whole blocks span one to one and a half buckets (coarsest), and its ragged
ends by finer ones, so only a few thousand summaries are read, never the points. With
numpy (seriesfast) each group of blocks is a bucket; without it (seriesloop) each
block goes to the bucket of its minimum's, and of its maximum's, index."""

from __future__ import annotations

import math
import mmap
import os
import struct
import sys
from array import array
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from datmo.core.storage import seriesfast, seriesloop
from datmo.core.storage.series import FANOUT, FOLDER, LEVELS, POINT, SUMMARY, manifest, where
from datmo.core.storage.store import Store

_DOUBLE = struct.Struct("<d")
FAST = True  # numpy's envelope when it is installed (tests turn it off to check the loop)


@dataclass
class View:
    """Points to draw: x and y as doubles (a y that is not finite: a gap), and how they
    were made. Where each x is first + delta * the point's index (rule), the indices
    too: they travel as 4 bytes a point where x takes 8."""

    x: array[float] = field(default_factory=lambda: array("d"))
    y: array[float] = field(default_factory=lambda: array("d"))
    total: int = 0  # points in the whole series
    shown: int = 0  # points of the series in the range asked for
    level: int = 0  # 0: the points themselves; k: envelopes of blocks of 16**k
    rule: tuple[float, float] | None = None  # (first, delta) of x = first + delta * index
    index: array[int] | None = None  # each point's index, with a rule (typecode "I")

    def to_dict(self) -> dict[str, Any]:
        """For JSON: x and y as lists, a gap as None."""
        doc = self.meta()
        doc["x"] = self.x.tolist()
        doc["y"] = [_num(v) for v in self.y]
        return doc

    def meta(self) -> dict[str, Any]:
        """How the view was made, and its number of points (n)."""
        return {"total": self.total, "shown": self.shown, "level": self.level, "n": len(self.x)}

    def wire(self) -> tuple[dict[str, Any], bytes]:
        """What the page reads without parsing a number: meta() (with "xi": [first,
        delta] where x comes by rule) and the bytes: n y as little-endian doubles, then
        n x as doubles or n indices as little-endian 32-bit unsigned integers, padded
        to a multiple of 8 bytes."""
        head = self.meta()
        xs: array[Any] = self.x
        if self.rule is not None and self.index is not None:
            head["xi"] = list(self.rule)
            xs = self.index
        ys = self.y
        if sys.byteorder != "little":
            xs, ys = array(xs.typecode, xs), array("d", ys)
            xs.byteswap()
            ys.byteswap()
        data = ys.tobytes() + xs.tobytes()
        return head, data + bytes(-len(data) % 8)


def indices(first: int, end: int) -> array[int] | None:
    """Indices [first, end) as 4-byte unsigned integers (None: they do not fit)."""
    if end > 2**32 or array("I").itemsize != 4:
        return None
    return array("I", range(first, end))


class Reader:
    """One series' files, read with pread (no lock: the manifest's counts are whole)."""

    def __init__(
        self, store: Store, run_id: str, name: str, doc: dict[str, Any] | None = None
    ) -> None:
        """doc: the run's manifest, when the caller has just read it."""
        meta = (manifest(store, run_id) if doc is None else doc).get("series", {}).get(name)
        self.n = int(meta["n"]) if meta else 0
        self.steps = bool(meta and meta["steps"])
        self.times = bool(meta and meta["times"])
        stride = meta.get("stride") if meta and self.steps else None
        # Step i is first + delta * i: x without reading the points (None: unknown).
        self.stride: tuple[float, float] | None = (
            (float(stride[0]), float(stride[1])) if stride and stride[1] is not None else None
        )
        self.base = os.path.join(where(store, run_id), FOLDER, meta["file"] if meta else "-")
        self._fds: dict[str, int] = {}
        self._maps: dict[str, mmap.mmap] = {}

    def close(self) -> None:
        for m in self._maps.values():
            m.close()
        self._maps.clear()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fd(self, suffix: str) -> int:
        fd = self._fds.get(suffix)
        if fd is None:
            fd = self._fds[suffix] = os.open(self.base + suffix, os.O_RDONLY)
        return fd

    def read_into(self, suffix: str, offset: int, into: memoryview) -> None:
        """Bytes of a file from offset into a buffer (all of them: the manifest's counts
        say they are there)."""
        if os.preadv(self._fd(suffix), [into], offset) != len(into):
            raise OSError(f"{self.base}{suffix} is shorter than its manifest says")

    def _read(self, suffix: str, offset: int, size: int) -> array[float]:
        out = array("d")
        out.frombytes(os.pread(self._fd(suffix), size, offset))
        return out

    def points(self, start: int = 0, end: int | None = None) -> array[float]:
        """Raw (step, value, time) triples of points [start, end)."""
        end = self.n if end is None else min(end, self.n)
        if end <= start:
            return array("d")
        return self._read(".f64", start * POINT, (end - start) * POINT)

    def mapped(self, level: int = 0) -> mmap.mmap:
        """The committed part of the points file (level 0) or of a level's summaries,
        mapped: read in place, without a system call or a copy each (not empty)."""
        suffix = f".L{level}" if level else ".f64"
        found = self._maps.get(suffix)
        if found is None:
            size = (self.n // FANOUT**level) * SUMMARY if level else self.n * POINT
            found = mmap.mmap(self._fd(suffix), size, prot=mmap.PROT_READ)
            self._maps[suffix] = found
        return found

    def rule(self, axis: str) -> tuple[float, float] | None:
        """(first, delta) where every point's x is first + delta * its index."""
        if axis == "time":
            return None
        return self.stride if self.steps else (0.0, 1.0)

    def x_at(self, i: int, axis: str) -> float:
        """One point's x."""
        if axis != "time" and not self.steps:
            return float(i)
        if axis != "time" and self.stride:
            return self.stride[0] + self.stride[1] * i
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


Plan = tuple[View, "Job | None"]


def coarsest(per: float) -> int:
    """The level whose blocks make the envelope: the coarsest at which a group of whole
    blocks holding a bucket's points (per) spans at most one and a half buckets, three
    pixel columns. The fewer summaries a view reads, the less it costs (issue 15)."""
    level = 0
    while level < LEVELS:
        size = FANOUT ** (level + 1)
        if math.ceil(per / size) * size > 1.5 * per:
            break
        level += 1
    return level


class Job(NamedTuple):
    """One series' envelope to make: the pieces [(level, first, end)] that cover its
    points from i0 on, cut into `buckets` buckets of `per` points each."""

    reader: Reader
    pieces: list[tuple[int, int, int]]
    i0: int
    per: float
    buckets: int
    axis: str
    level: int  # the level of the long middle piece


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
    return windows(store, [(run_id, name, None)], axis, lo, hi, width)[0]


def windows(
    store: Store,
    wanted: list[tuple[str, str, dict[str, Any] | None]],
    axis: str = "step",
    lo: float | None = None,
    hi: float | None = None,
    width: int = 1000,
) -> list[View]:
    """window() of several series between the same lo and hi (runs overlaid): with
    numpy, the envelopes of all of them come from one pass of array operations, so
    twenty runs cost little more than one (issue 15). wanted: (run id, series name,
    the run's manifest if the caller has just read it, else None)."""
    width = max(10, min(int(width), 10_000))
    views: list[View] = []
    jobs: list[tuple[View, Job]] = []
    readers: list[Reader] = []
    try:
        for run_id, name, doc in wanted:
            r = Reader(store, run_id, name, doc)
            readers.append(r)
            view, job = _plan(r, axis, lo, hi, width)
            views.append(view)
            if job is not None:
                jobs.append((view, job))
        if FAST and jobs and seriesfast.available():
            made = seriesfast.envelopes([job for _, job in jobs])
            for (view, job), (view.x, view.y, view.index) in zip(jobs, made, strict=True):
                view.rule = job.reader.rule(axis) if view.index is not None else None
        else:
            for view, job in jobs:
                view.x, view.y = seriesloop.envelope(job)
    finally:
        for r in readers:
            r.close()
    return views


def _plan(r: Reader, axis: str, lo: float | None, hi: float | None, width: int) -> Plan:
    """The view of one series: its points when there are few enough in the range, or
    else the envelope to make."""
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
        view.y = pts[1::3]
        if axis == "time" or r.steps:
            view.x = pts[2::3] if axis == "time" else pts[0::3]
        else:
            view.x = array("d", range(i0, i0 + len(view.y)))
        view.rule = r.rule(axis)
        view.index = indices(i0, i0 + len(view.y)) if view.rule else None
        return view, None
    # Each bucket spans two pixel columns and gives its min and max: at most `width`
    # points, as many as a short series drawn whole.
    buckets = max(1, width // 2)
    per = view.shown / buckets  # points per bucket
    level = coarsest(per)
    view.level = level
    return view, Job(r, _cover(i0, i1, level, r.n), i0, per, buckets, axis, level)


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
