"""`datmo plot RUN... [-o FILE]`: runs' metric charts written to a file (datmo/ui/plot.py)."""

from __future__ import annotations

from pathlib import Path

import click

from datmo.cli.output import echo


@click.command()
@click.argument("runs", nargs=-1)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    metavar="KEY",
    help="A metric to draw (default: all). Repeatable.",
)
@click.option(
    "--sweep",
    "sweep_ref",
    metavar="ID",
    help="Draw a sweep's runs and its objective by each swept key.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="FILE.html (default), FILE.png or FILE.svg.",
)
@click.option(
    "--x",
    "axis",
    type=click.Choice(["step", "time"]),
    default="step",
    show_default=True,
    help="The x axis.",
)
@click.option("--log", is_flag=True, help="A log scale for the values.")
def plot(
    runs: tuple[str, ...],
    metrics: tuple[str, ...],
    sweep_ref: str | None,
    output: Path | None,
    axis: str,
    log: bool,
) -> None:
    """Write the charts of runs' metrics to a file: HTML that opens offline, or PNG/SVG.

    PNG and SVG need matplotlib (pip install 'datmo[plot]').
    Example: datmo plot 3f2a9c1b 7d41e0aa --metric loss -o loss.html
    """
    from datmo.core.controller.project import open_project
    from datmo.ui import plot as plotting

    if runs and sweep_ref:
        raise click.UsageError("name runs or --sweep, not both")
    out = output
    if out is not None:
        plotting.need_image_library(out)
    ctx = open_project()
    fig = plotting.gather(ctx, list(runs), list(metrics), sweep_ref, axis, log)
    if out is None:
        first = (sweep_ref or fig.runs[0]["id"])[:8]
        out = Path(f"{'sweep' if sweep_ref else 'plot'}-{first}.html")
    plotting.write(fig, out)
    drawn = sum(len(v) for v in fig.metrics.values())
    echo(f"wrote {out} ({len(fig.metrics)} metrics, {drawn} series of {len(fig.runs)} runs)")
