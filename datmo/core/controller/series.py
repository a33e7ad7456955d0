"""A run's metric series for viewers (the dashboard, `datmo plot`, the SDK): which
stored series is a metric's, brought up to date from what the run logged, read whole or
by range at a chart's detail (datmo.core.storage.series, seriesview)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from datmo.core.entity.run import Run
from datmo.core.storage import series as stored
from datmo.core.storage import seriesview
from datmo.core.storage.project import ProjectContext
from datmo.core.storage.seriesview import View
from datmo.errors import UsageError

AXES = ("step", "time")


def chosen(ctx: ProjectContext, run: Run, wait: bool = False) -> dict[str, str]:
    """Metric key -> its stored series: the values the task logged through the SDK, or
    else the ones read from its output (the rules of datmo.core.task.metrics), for the
    run's metrics only. Takes in what was logged since the last look first."""
    stored.sync(ctx.store, run.id, wait=wait)
    return _picked(run, stored.manifest(ctx.store, run.id).get("series", {}))


def _picked(run: Run, names: Collection[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key in run.metrics:
        for name in (f"m:{key}", f"c:{key}"):
            if name in names:
                out[key] = name
                break
    return out


def window(
    ctx: ProjectContext,
    run: Run,
    key: str,
    axis: str = "step",
    lo: float | None = None,
    hi: float | None = None,
    width: int = 1000,
    names: dict[str, str] | None = None,
) -> View:
    """A metric's points between lo and hi at a chart's detail (empty: no such series)."""
    if axis not in AXES:
        raise UsageError(f"the x axis is step or time, not '{axis}'")
    name = (names if names is not None else chosen(ctx, run)).get(key)
    if name is None:
        return View()
    return seriesview.window(ctx.store, run.id, name, axis, lo, hi, width)


def windows(
    ctx: ProjectContext,
    found: list[Run],
    key: str,
    axis: str = "step",
    lo: float | None = None,
    hi: float | None = None,
    width: int = 1000,
) -> list[View]:
    """A metric's points of several runs (overlaid) between the same lo and hi, their
    envelopes made together (seriesview.windows); a run without it: an empty view."""
    if axis not in AXES:
        raise UsageError(f"the x axis is step or time, not '{axis}'")
    wanted: list[tuple[str, str, dict[str, Any] | None]] = []
    where: list[int] = []
    for i, run in enumerate(found):
        doc = stored.synced(ctx.store, run.id)  # read once, for the name and the reader
        name = _picked(run, doc.get("series", {})).get(key)
        if name is not None:
            wanted.append((run.id, name, doc))
            where.append(i)
    views = [View() for _ in found]
    for i, view in zip(
        where, seriesview.windows(ctx.store, wanted, axis, lo, hi, width), strict=True
    ):
        views[i] = view
    return views


def full(ctx: ProjectContext, run: Run, keys: list[str] | None = None) -> dict[str, list[Any]]:
    """Each metric's every point as [step, value, time], waiting for a sync under way."""
    names = chosen(ctx, run, wait=True)
    return {
        k: seriesview.full(ctx.store, run.id, n)
        for k, n in names.items()
        if keys is None or k in keys
    }
