"""`datmo plot`: the dashboard's charts written to a file, for a terminal or a cluster's
login node. HTML by default, self-contained (uPlot and the data inlined; it opens
offline); PNG or SVG through matplotlib, when it is installed (`datmo[plot]`).

Each series is read at the detail of a wide chart (datmo.core.storage.seriesview), so a
run of a million steps makes a file as small as one of a few thousand.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from datmo.core.controller import run as runs
from datmo.core.controller import series
from datmo.core.controller import sweep as sweeps
from datmo.core.entity.run import Run
from datmo.core.storage.project import ProjectContext
from datmo.errors import DatmoError, UsageError

WIDTH = 1600  # points per series at most twice this
FORMATS = (".html", ".htm", ".png", ".svg")
STATIC = resources.files("datmo.ui") / "static"


@dataclass
class Figure:
    """What a plot shows: per metric, per run, its points; for a sweep, its scatter."""

    title: str
    axis: str
    log: bool
    runs: list[dict[str, Any]] = field(default_factory=list)  # id, label
    metrics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # key -> series
    scatter: list[dict[str, Any]] = field(default_factory=list)  # sweep: key vs objective

    def to_dict(self) -> dict[str, Any]:
        return vars(self).copy()


def gather(
    ctx: ProjectContext,
    refs: list[str],
    metrics: list[str],
    sweep_ref: str | None = None,
    axis: str = "step",
    log: bool = False,
) -> Figure:
    if axis not in series.AXES:
        raise UsageError(f"--x is step or time, not '{axis}'")
    if sweep_ref:
        sweep = sweeps.get(ctx, sweep_ref)
        found = sweeps.runs_of(ctx, sweep)
        ranked = sweeps.ranked(sweep, found)
        chosen = ranked + [r for r in found if r is not None and r not in ranked]
        title = f"sweep {sweep.id[:8]}: {sweep.command}"
        objective = (sweep.objective or "").partition(":")[0]
        if not metrics and objective:
            metrics = [objective]
    else:
        if not refs:
            raise UsageError("name one or more runs (datmo plot RUN...) or a sweep (--sweep ID)")
        chosen = [runs.get(ctx, ref) for ref in dict.fromkeys(refs)]
        title = "runs " + ", ".join(r.id[:8] for r in chosen)
    if not chosen:
        raise UsageError("the sweep has no runs yet")
    fig = Figure(title, axis, log)
    fig.runs = [{"id": r.id, "label": _label(r)} for r in chosen]
    names = {r.id: series.chosen(ctx, r, wait=True) for r in chosen}
    every = sorted({k for n in names.values() for k in n})
    wanted = list(dict.fromkeys(metrics)) or every
    missing = [k for k in wanted if k not in every]
    if missing:
        have = ", ".join(every) or "none"
        raise UsageError(f"no run here logged a series of {', '.join(missing)} (they have: {have})")
    for key in wanted:
        fig.metrics[key] = [
            {
                "run": r.id,
                **series.window(ctx, r, key, axis, width=WIDTH, names=names[r.id]).to_dict(),
            }
            for r in chosen
            if key in names[r.id]
        ]
    if sweep_ref:
        fig.scatter = _scatter(chosen, sorted(sweep.space), wanted[0] if wanted else None)
    return fig


def _label(run: Run) -> str:
    text = run.id[:8]
    if run.message:
        text += f" {run.message[:40]}"
    return text


def _scatter(found: list[Run], keys: list[str], metric: str | None) -> list[dict[str, Any]]:
    """For each swept key with numbers: (its value, the metric's final value) per run."""
    out = []
    for key in keys:
        pts = [
            [r.config.get(key), r.metrics.get(metric)]
            for r in found
            if metric
            and isinstance(r.config.get(key), (int, float))
            and isinstance(r.metrics.get(metric), (int, float))
        ]
        if pts:
            out.append({"key": key, "metric": metric, "points": sorted(pts)})
    return out


def write(fig: Figure, out: Path) -> Path:
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"-o {out.name}: write .html, .png or .svg")
    if suffix in (".png", ".svg"):
        from datmo.ui.plotimage import draw

        draw(fig, out)
    else:
        out.write_text(page(fig), encoding="utf-8")
    return out


def _sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def page(fig: Figure) -> str:
    """One HTML file: its scripts are datmo's own, allowed by their hashes alone; the
    data sits in a JSON block (never run), with '<' escaped so no text can end it."""
    uplot = (STATIC / "vendor" / "uPlot.iife.min.js").read_text(encoding="utf-8")
    css = (STATIC / "vendor" / "uPlot.min.css").read_text(encoding="utf-8")
    draw = (STATIC / "plot.js").read_text(encoding="utf-8")
    data = json.dumps(fig.to_dict(), allow_nan=False, separators=(",", ":"))
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    csp = f"default-src 'none'; script-src {_sha(uplot)} {_sha(draw)}; style-src 'unsafe-inline'"
    template = (STATIC / "plot.html").read_text(encoding="utf-8")
    parts = {
        "csp": html.escape(csp, quote=True),
        "title": html.escape(fig.title),
        "uplot_css": css,
        "uplot_js": uplot,
        "data": data,
        "plot_js": draw,
    }
    # One pass over the template: what is put in is never searched again.
    return re.sub(r"\{\{(\w+)\}\}", lambda m: parts[m.group(1)], template)


def need_image_library(out: Path) -> None:
    """One clear line before any work when a PNG or SVG is asked for without matplotlib."""
    if out.suffix.lower() in (".png", ".svg"):
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise DatmoError(
                f"{out.suffix[1:].upper()} needs matplotlib: pip install 'datmo[plot]' "
                "(or write HTML, which needs nothing: -o plot.html)"
            ) from None
