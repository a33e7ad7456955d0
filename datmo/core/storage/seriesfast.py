"""The min/max envelope of datmo.core.storage.seriesview, computed with numpy when it is
installed (`datmo[ui]`): the same points, from array operations instead of a Python step
per bucket, so overlaying many runs costs little more than one. seriesview falls back to
its own pure-Python loop without numpy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datmo.core.storage.seriesview import Reader

np: Any = None  # numpy, once imported (only when a long series is drawn)


def available() -> bool:
    global np
    if np is None:
        try:
            import numpy
        except ImportError:  # optional: seriesview's own loop does the same, more slowly
            return False
        np = numpy
    return True


def envelope(
    r: Reader,
    pieces: list[tuple[int, int, int]],
    i0: int,
    per: float,
    buckets: int,
    axis: str,
) -> tuple[list[float], list[float | None]]:
    """x and y of each bucket's minimum and maximum (in index order), from the summaries
    of pieces [(level, first, end)] that cover the range starting at point i0."""
    cols: list[list[Any]] = [[], [], [], []]
    for lvl, first, end in pieces:
        if lvl == 0:
            pts = np.frombuffer(r.points(first, end), dtype=np.float64)
            where = np.arange(first, end, dtype=np.float64)
            parts = (where, pts[1::3], where, pts[1::3])
        else:
            s = np.frombuffer(r.summaries(lvl, first, end), dtype=np.float64)
            parts = (s[0::4], s[1::4], s[2::4], s[3::4])
        for c, p in zip(cols, parts, strict=True):
            c.append(p)
    imin, vmin, imax, vmax = (np.concatenate(c) if c else np.empty(0) for c in cols)
    picked_i, picked_v = [], []
    for idx, val, reduce in ((imin, vmin, np.minimum), (imax, vmax, np.maximum)):
        finite = np.isfinite(val)
        if not finite.all():
            idx, val = idx[finite], val[finite]
        if not len(idx):
            continue
        # Summaries come in index order, so their buckets never go down: each bucket is
        # one run of them, reduced at once.
        bucket = ((idx - i0) / per).astype(np.int64)
        np.minimum(bucket, buckets - 1, out=bucket)
        new = np.empty(len(bucket), dtype=bool)
        new[0] = True
        np.not_equal(bucket[1:], bucket[:-1], out=new[1:])
        starts = np.flatnonzero(new)
        best = reduce.reduceat(val, starts)
        # The first position in each bucket that holds its best value.
        hits = np.flatnonzero(val == best[np.cumsum(new) - 1])
        owner = np.searchsorted(starts, hits, side="right")
        first = np.empty(len(hits), dtype=bool)
        first[0] = True
        np.not_equal(owner[1:], owner[:-1], out=first[1:])
        chosen = hits[first]
        picked_i.append(idx[chosen])
        picked_v.append(val[chosen])
    if not picked_i:
        return [], []
    index = np.concatenate(picked_i)
    value = np.concatenate(picked_v)
    order = np.argsort(index, kind="stable")
    index, value = index[order], value[order]
    fresh = np.empty(len(index), dtype=bool)
    fresh[0] = True
    np.not_equal(index[1:], index[:-1], out=fresh[1:])  # a point both min and max: once
    index, value = index[fresh].astype(np.int64), value[fresh]
    if axis != "time" and not r.steps:
        xs = index.astype(np.float64)
    else:
        raw = np.frombuffer(r.mapped(), dtype=np.float64).reshape(-1, 3)
        xs = raw[index, 2 if axis == "time" else 0]
    return xs.tolist(), value.tolist()
