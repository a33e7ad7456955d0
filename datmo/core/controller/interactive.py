"""`datmo run -i` (and `datmo terminal`): a run whose terminal is yours while it lasts."""

from __future__ import annotations

import time
from typing import Any

from datmo.core.controller import run as runs
from datmo.core.controller import task
from datmo.core.entity.run import Run
from datmo.core.storage import runs as records
from datmo.core.storage.project import ProjectContext
from datmo.core.task import ttyrelay
from datmo.core.task.spec import RunSpec


def run_interactive(ctx: ProjectContext, spec: RunSpec, progress: Any = None) -> Run:
    """Start the run, relay the terminal until the task ends, return the final record."""
    spec.interactive = True
    spec.detach = False
    started = runs.start(ctx, spec, progress)
    try:
        ttyrelay.attach(records.data_dir(ctx.store, started.id))
    except KeyboardInterrupt:
        task.request_stop(ctx, started)
    while True:
        try:
            final = runs.get(ctx, started.id)
            if final.finished:
                return final
            time.sleep(0.1)
        except KeyboardInterrupt:
            task.request_stop(ctx, started)
