"""The min/max envelope of datmo.core.storage.seriesview in pure Python, for installs
without numpy (seriesfast does the same with array operations): one bucket per two pixel
columns, each bucket's minimum and maximum from the stored summaries, the long middle
run of them with C-speed min() and max() over slices."""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING

from datmo.core.storage.series import FANOUT

if TYPE_CHECKING:
    from datmo.core.storage.seriesview import Job

Slots = list[tuple[float, float] | None]


def envelope(job: Job) -> tuple[array[float], array[float]]:
    """x and y of each bucket's minimum and maximum, in pure Python (without numpy)."""
    r, i0, per, buckets, level = job.reader, job.i0, job.per, job.buckets, job.level
    lows: Slots = [None] * buckets
    highs: Slots = [None] * buckets
    for lvl, first, end in job.pieces:
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
    xs, ys = array("d"), array("d")
    for low, high in zip(lows, highs, strict=True):
        for i, v in sorted({p for p in (low, high) if p is not None}):
            xs.append(r.x_at(int(i), job.axis))
            ys.append(v)
    return xs, ys


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
