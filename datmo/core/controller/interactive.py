"""`datmo run -i` (and `datmo terminal`): a run whose terminal is yours while it lasts."""

from __future__ import annotations

import time
from typing import Any

from datmo.core.controller import launch
from datmo.core.controller import run as runs
from datmo.core.entity.run import Run
from datmo.core.storage.project import ProjectContext
from datmo.core.task import ttyrelay
from datmo.core.task.spec import RunSpec


def run_interactive(ctx: ProjectContext, spec: RunSpec, progress: Any = None) -> Run:
    """Start the run, relay the terminal until the task ends, return the final record."""
    spec.interactive = True
    spec.detach = False
    started = launch.start(ctx, spec, progress)
    try:
        ttyrelay.attach(runs.data_dir(ctx, started.id))
    except KeyboardInterrupt:
        runs.request_stop(ctx, started)
    while True:
        try:
            final = runs.get(ctx, started.id)
            if final.finished:
                return final
            time.sleep(0.1)
        except KeyboardInterrupt:
            runs.request_stop(ctx, started)
