"""`datmo plot -o FILE.png|.svg`: the figure drawn by matplotlib (the `datmo[plot]`
extra), imported only here."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datmo.ui.plot import Figure


def draw(fig: Figure, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no screen needed
    import matplotlib.pyplot as plt

    panels = len(fig.metrics) + len(fig.scatter)
    cols = 1 if panels == 1 else 2
    rows = max(1, math.ceil(panels / cols))
    figure, axes = plt.subplots(rows, cols, figsize=(7 * cols, 3.6 * rows), squeeze=False)
    flat = [a for row in axes for a in row]
    colors = {r["id"]: f"C{i % 10}" for i, r in enumerate(fig.runs)}
    labels = {r["id"]: r["label"] for r in fig.runs}
    at = 0
    for key, lines in fig.metrics.items():
        ax = flat[at]
        at += 1
        for s in lines:
            ys = [math.nan if y is None else y for y in s["y"]]
            ax.plot(s["x"], ys, color=colors[s["run"]], label=labels[s["run"]], linewidth=1.2)
        ax.set_title(key)
        ax.set_xlabel(fig.axis)
        if fig.log:
            ax.set_yscale("log")
        if len(lines) <= 12:
            ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    for s in fig.scatter:
        ax = flat[at]
        at += 1
        ax.scatter([p[0] for p in s["points"]], [p[1] for p in s["points"]], color="C0")
        ax.set_title(f"{s['metric']} by {s['key']}")
        ax.set_xlabel(s["key"])
        ax.grid(alpha=0.3)
    for ax in flat[at:]:
        ax.set_visible(False)
    figure.suptitle(fig.title, fontsize="medium")
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
