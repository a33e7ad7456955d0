"""The min/max envelopes of datmo.core.storage.seriesview, computed with numpy when it is
installed (`datmo[ui]`).

The long middle piece of a range is whole blocks of one level; it is cut into groups of
the same number of blocks (one to one and a half buckets' points), so each group's
minimum and maximum come from an argmin and an argmax over a reshape. Series whose
groups have the same shape (runs of one length, as a sweep's are) are read into one
buffer a few at a time and reduced together (issue 15: twenty runs overlaid cost
little more than one). The ragged ends, finer blocks covering less than a block of
the middle's level, are a group each. Every group keeps its own minimum and maximum
at their own index, so every spike stays."""

from __future__ import annotations

import math
from array import array
from typing import TYPE_CHECKING, Any

from datmo.core.storage.series import FANOUT, SUMMARY

if TYPE_CHECKING:
    from datmo.core.storage.seriesview import Job, Reader

np: Any = None  # numpy, once imported (only when a long series is drawn)
# Series of one shape reduced together: enough to share the array operations' fixed
# cost, few enough that their summaries stay in the CPU's cache (a batch of twenty
# was slower than one at a time, four is faster: issue 15).
CHUNK = 4
_SPARE: list[bytearray] = []  # read buffers of earlier views, for the next ones
Made = tuple["array[float]", "array[float]", "array[int] | None"]  # x, y, indices


def available() -> bool:
    global np
    if np is None:
        try:
            import numpy
        except ImportError:  # optional: seriesview's own loop does the same, more slowly
            return False
        np = numpy
    return True


def _buffer(size: int) -> bytearray:
    """A read buffer of at least size bytes: one an earlier view used, where there is one.
    Memory freshly mapped costs a page fault per 4 kB on first touch, several times
    what reading the summaries into it costs (issue 15)."""
    try:
        buf = _SPARE.pop()  # atomic: the server answers requests in threads
    except IndexError:
        return bytearray(size)
    return buf if len(buf) >= size else bytearray(size)


def _read(r: Reader, level: int, first: int, end: int, into: memoryview) -> None:
    """Summaries [first, end) of a level into a buffer as rows (index of min, min, index
    of max, max); at level 0 the points themselves, each its own min and max."""
    if level:
        r.read_into(f".L{level}", first * SUMMARY, into)
        return
    rows = np.frombuffer(into, dtype=np.float64).reshape(-1, 4)
    pts = np.frombuffer(r.points(first, end), dtype=np.float64).reshape(-1, 3)
    rows[:, 0] = rows[:, 2] = np.arange(first, end)
    rows[:, 1] = rows[:, 3] = pts[:, 1]


def _pairs(groups: Any) -> tuple[Any, Any, Any]:
    """Each group's minimum and maximum, in index order: indices and values (count, 2),
    and which to keep (count, 2). A value that is not a number (or infinite) is never
    chosen, so a group of none keeps nothing; a point both min and max is kept once.
    Ties: the first row."""
    count, size = groups.shape[:2]
    start = np.arange(count) * size
    rows = groups.reshape(-1, 4)
    picked = []
    for col, pick, worst in ((1, np.argmin, np.inf), (3, np.argmax, -np.inf)):
        values = groups[:, :, col]
        at = pick(values, axis=1) + start  # the row chosen in each group
        best = rows[at, col]
        ok = np.isfinite(best)
        if not ok.all():  # a NaN or an infinity was chosen: set them aside
            values = np.where(np.isfinite(values), values, worst)
            at = pick(values, axis=1) + start
            best = rows[at, col]
            ok = np.isfinite(best)
        picked.append((rows[at, col - 1], best, ok))
    (imin, vmin, okmin), (imax, vmax, okmax) = picked
    low_first = imin <= imax
    index = np.empty((count, 2))
    value = np.empty((count, 2))
    keep = np.empty((count, 2), dtype=bool)
    index[:, 0] = np.where(low_first, imin, imax)
    index[:, 1] = np.where(low_first, imax, imin)
    value[:, 0] = np.where(low_first, vmin, vmax)
    value[:, 1] = np.where(low_first, vmax, vmin)
    keep[:, 0] = np.where(low_first, okmin, okmax)
    keep[:, 1] = np.where(low_first, okmax, okmin) & (imin != imax)
    return index, value, keep


def _few(flat: array[float]) -> list[tuple[float, float]]:
    """The minimum and maximum of a few summaries (a ragged end) as one group, chosen as
    _pairs chooses them: [(index, value)] in index order."""
    lo = hi = None
    for j in range(0, len(flat), 4):
        vmin, vmax = flat[j + 1], flat[j + 3]
        if math.isfinite(vmin) and (lo is None or vmin < lo[1]):
            lo = (flat[j], vmin)
        if math.isfinite(vmax) and (hi is None or vmax > hi[1]):
            hi = (flat[j + 2], vmax)
    return sorted({p for p in (lo, hi) if p is not None})


def _shape(job: Job) -> tuple[int, int, int, int, int]:
    """(level, first, end, rows per group, position of the middle piece in job.pieces)."""
    pieces = job.pieces
    mid = max(range(len(pieces)), key=lambda k: pieces[k][0])
    level, first, end = pieces[mid]
    return level, first, end, max(1, math.ceil(job.per / FANOUT**level)), mid


def envelopes(jobs: list[Job]) -> list[Made]:
    """x and y of each group's minimum and maximum, in index order, of each job, and
    their indices where x comes by rule (Reader.rule) and they fit in 4 bytes."""
    shapes = [_shape(j) for j in jobs]
    made: list[Made | None] = [None] * len(jobs)
    alike: dict[tuple[int, int, int], list[int]] = {}
    for k, (level, _, _, size, _) in enumerate(shapes):
        alike.setdefault((level, size, k // CHUNK), []).append(k)
    for (_, size, _), ks in alike.items():
        wholes = [(shapes[k][2] - shapes[k][1]) // size * size for k in ks]
        buf = _buffer(sum(wholes) * SUMMARY)
        try:
            view = memoryview(buf)
            at = 0
            for k, whole in zip(ks, wholes, strict=True):
                level, first = shapes[k][0], shapes[k][1]
                _read(jobs[k].reader, level, first, first + whole, view[at : at + whole * SUMMARY])
                at += whole * SUMMARY
            rows = np.frombuffer(buf, dtype=np.float64, count=at // 8).reshape(-1, size, 4)
            index, value, keep = _pairs(rows) if len(rows) else (None, None, None)
        finally:
            if len(_SPARE) < 2:
                _SPARE.append(buf)
        g = 0
        for k, whole in zip(ks, wholes, strict=True):
            count = whole // size
            middle = (index, value, keep, g, g + count)
            made[k] = _one(jobs[k], shapes[k], whole, middle)
            g += count
    return [m for m in made if m is not None]


def _one(job: Job, shape: tuple[int, int, int, int, int], whole: int, middle: Any) -> Made:
    """One job's points: its left end, its groups of the middle piece (rows [g0, g1) of
    the batch), the rest of the middle piece and its right end, in index order."""
    r, pieces = job.reader, job.pieces
    level, first, end, _, mid = shape
    index, value, keep, g0, g1 = middle
    # Each end, less than a bucket wide, is a group of its own.
    left, rest, right = (
        _few(_flat(r, side))
        for side in (pieces[:mid], [(level, first + whole, end)], pieces[mid + 1 :])
    )
    parts = [_columns(left)]
    if g1 > g0:
        mask = keep[g0:g1].ravel()
        parts.append((index[g0:g1].ravel()[mask], value[g0:g1].ravel()[mask]))
    parts += [_columns(rest), _columns(right)]
    at = np.concatenate([p[0] for p in parts]).astype(np.int64)
    ys = np.concatenate([p[1] for p in parts])
    if not len(at):
        return array("d"), array("d"), None
    rule = r.rule(job.axis)
    if rule is not None:
        xs = rule[0] + rule[1] * at.astype(np.float64)
    else:
        raw = np.frombuffer(r.mapped(0), dtype="<f8").reshape(-1, 3)
        xs = raw[at, 2 if job.axis == "time" else 0]
    small = rule is not None and at[-1] < 2**32 and array("I").itemsize == 4
    return _doubles(xs), _doubles(ys), array("I", at.astype(np.uint32).tobytes()) if small else None


def _columns(pairs: list[tuple[float, float]]) -> tuple[Any, Any]:
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def _flat(r: Reader, pieces: list[tuple[int, int, int]]) -> array[float]:
    flat = array("d")
    for level, first, end in pieces:
        if end > first:
            flat.extend(r.summaries(level, first, end))
    return flat


def _doubles(a: Any) -> array[float]:
    return array("d", np.ascontiguousarray(a, dtype=np.float64).tobytes())
