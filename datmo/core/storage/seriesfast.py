"""The min/max envelope of datmo.core.storage.seriesview, computed with numpy when it is
installed (`datmo[ui]`), from the stored summaries read in place (mapped, not copied).

The long middle piece of a range is whole blocks of one level; it is cut into groups of
the same number of blocks (about a bucket's points each), so each group's minimum and
maximum come from one reshape and one argmin and argmax over it: a few array operations
of a few thousand rows, whatever the series' length, where finding each point's bucket
took many more (issue 15: twenty runs overlaid cost little more than one). The ragged
ends, finer blocks covering less than a bucket, are a group each. Every group keeps its
own minimum and maximum, at their own index, so every spike stays.
"""

from __future__ import annotations

import math
from array import array
from typing import TYPE_CHECKING, Any

from datmo.core.storage.series import FANOUT, SUMMARY

if TYPE_CHECKING:
    from datmo.core.storage.seriesview import Job, Reader

np: Any = None  # numpy, once imported (only when a long series is drawn)
_SPARE: list[bytearray] = []  # read buffers of earlier views, for the next ones


def available() -> bool:
    global np
    if np is None:
        try:
            import numpy
        except ImportError:  # optional: seriesview's own loop does the same, more slowly
            return False
        np = numpy
    return True


def _rows(r: Reader, level: int, first: int, end: int, buf: bytearray) -> Any:
    """Summaries [first, end) of a level as rows (index of min, min, index of max, max),
    read into buf; at level 0 the points themselves, each its own min and max."""
    if level:
        size = (end - first) * SUMMARY
        r.read_into(f".L{level}", first * SUMMARY, memoryview(buf)[:size])
        return np.frombuffer(buf, dtype="<f8", count=size // 8).reshape(-1, 4)
    pts = np.frombuffer(r.points(first, end), dtype=np.float64).reshape(-1, 3)
    rows = np.empty((end - first, 4))
    rows[:, 0] = rows[:, 2] = np.arange(first, end)
    rows[:, 1] = rows[:, 3] = pts[:, 1]
    return rows


def _buffer(size: int) -> bytearray:
    """A read buffer of at least size bytes: one an earlier view used, where there is one.
    Memory freshly mapped costs a page fault per 4 kB on first touch, several times
    what reading the summaries into it costs (issue 15)."""
    try:
        buf = _SPARE.pop()  # atomic: the server answers requests in threads
    except IndexError:
        return bytearray(size)
    return buf if len(buf) >= size else bytearray(size)


def _few(flat: array[float], lows: list[float], highs: list[float]) -> None:
    """The minimum and maximum of a few summaries (a ragged end) as one group: (index,
    value) pairs onto lows and highs, as _extremes chooses them."""
    lo = hi = None
    for j in range(0, len(flat), 4):
        vmin, vmax = flat[j + 1], flat[j + 3]
        if math.isfinite(vmin) and (lo is None or vmin < lo[1]):
            lo = (flat[j], vmin)
        if math.isfinite(vmax) and (hi is None or vmax > hi[1]):
            hi = (flat[j + 2], vmax)
    for found, into in ((lo, lows), (hi, highs)):
        if found is not None:
            into.extend(found)


def _extremes(groups: Any, out: list[Any]) -> None:
    """(indices, values) of each group's minimum, then maximum, into out; groups are
    (count, rows, 4). A value that is not a number (or infinite) is never chosen, and a
    group of none gives no point. Ties: the first row."""
    count, size = groups.shape[:2]
    start = np.arange(count) * size
    rows = groups.reshape(-1, 4)
    for col, pick, worst in ((1, np.argmin, np.inf), (3, np.argmax, -np.inf)):
        values = groups[:, :, col]
        at = pick(values, axis=1) + start  # the row chosen in each group
        best = rows[at, col]
        if not np.isfinite(best).all():  # a NaN or an infinity was chosen: set them aside
            values = np.where(np.isfinite(values), values, worst)
            at = pick(values, axis=1) + start
            best = rows[at, col]
            keep = np.isfinite(best)  # a group of none gives no point
            at, best = at[keep], best[keep]
        out.append((rows[at, col - 1], best))


def envelope(job: Job) -> tuple[array[float], array[float], array[int] | None]:
    """x and y of each group's minimum and maximum, in index order, and their indices
    where x comes by rule (Reader.rule) and they fit in 4 bytes."""
    r, pieces = job.reader, job.pieces
    mid = max(range(len(pieces)), key=lambda k: pieces[k][0])
    level, first, end = pieces[mid]
    per_group = max(1, math.ceil(job.per / FANOUT**level))  # rows of about a bucket
    buf = _buffer((end - first) * SUMMARY if level else 0)
    try:
        rows = _rows(r, level, first, end, buf)
        whole = len(rows) // per_group * per_group
        found: list[Any] = []
        if whole:
            _extremes(rows[:whole].reshape(-1, per_group, 4), found)
        lows: list[float] = []
        highs: list[float] = []
        if whole < len(rows):
            _few(array("d", rows[whole:].tobytes()), lows, highs)
    finally:
        if len(_SPARE) < 4:
            _SPARE.append(buf)
    for side in (pieces[:mid], pieces[mid + 1 :]):
        if side:
            flat = array("d")
            for lvl, a, b in side:
                flat.extend(r.summaries(lvl, a, b))
            _few(flat, lows, highs)
    for pairs in (lows, highs):
        if pairs:
            found.append((np.array(pairs[0::2]), np.array(pairs[1::2])))
    index = np.concatenate([f[0] for f in found]).astype(np.int64) if found else np.empty(0)
    if not len(index):
        return array("d"), array("d"), None
    value = np.concatenate([f[1] for f in found])
    order = np.argsort(index, kind="stable")
    index, value = index[order], value[order]
    fresh = np.empty(len(index), dtype=bool)
    fresh[0] = True
    np.not_equal(index[1:], index[:-1], out=fresh[1:])  # a point both min and max: once
    index, value = index[fresh], value[fresh]
    rule = r.rule(job.axis)
    if rule is not None:
        xs = rule[0] + rule[1] * index.astype(np.float64)
    else:
        raw = np.frombuffer(r.mapped(0), dtype="<f8").reshape(-1, 3)
        xs = raw[index, 2 if job.axis == "time" else 0]
    small = rule is not None and index[-1] < 2**32 and array("I").itemsize == 4
    at = array("I", index.astype(np.uint32).tobytes()) if small else None
    return _doubles(xs), _doubles(value), at


def _doubles(a: Any) -> array[float]:
    return array("d", np.ascontiguousarray(a, dtype=np.float64).tobytes())
