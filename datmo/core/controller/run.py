"""Run records: save, get, list, stop, delete, logs. Starting a run is in launch.py."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from pathlib import Path

from datmo.core.entity.run import LOST, RUNNING, Run
from datmo.core.storage.fsutil import makedirs
from datmo.core.storage.index import RunIndex
from datmo.core.storage.project import ProjectContext
from datmo.core.storage.query import compile_filter, compile_sort
from datmo.core.task.process import alive
from datmo.core.util.memory import gc_paused
from datmo.core.util.signals import deferred_interrupt
from datmo.errors import DatmoError, UsageError

KIND = "runs"
DATA = "run-data"
STOP_FILE = "stop"  # a stop request the supervisor picks up, even before it has taken over


def index(ctx: ProjectContext) -> RunIndex:
    return RunIndex(ctx.store)


def data_dir(ctx: ProjectContext, run_id: str, create: bool = False) -> Path:
    path = ctx.store.path(DATA, run_id)
    if create:
        makedirs(path, ctx.store.owner)
    return path


def workdir(ctx: ProjectContext, run: Run) -> Path:
    """Where the task runs: the project, or a rerun's scratch copy."""
    return ctx.root / run.workdir if run.workdir else ctx.root


def log_path(ctx: ProjectContext, run_id: str) -> Path:
    return data_dir(ctx, run_id) / "output.log"


def save(ctx: ProjectContext, run: Run) -> Run:
    """Write the record and its index row together, under the project lock."""
    with ctx.store.lock(), deferred_interrupt():
        doc = run.to_dict()
        ctx.store.write_entity(KIND, doc)
        idx = index(ctx)
        try:
            idx.upsert(doc)
        finally:
            idx.close()
    return run


def effective(run: Run) -> Run:
    """A RUNNING run whose supervisor is gone is LOST, whatever the record says."""
    if run.status != RUNNING:
        return run
    sup = run.supervisor
    if alive(sup.get("pid"), sup.get("start")):
        return run
    return run.evolve(status=LOST, error=run.error or "its supervisor process is gone")


def get(ctx: ProjectContext, ref: str) -> Run:
    run_id = ctx.store.resolve(KIND, ref)
    return effective(Run.from_dict(ctx.store.read_entity(KIND, run_id)))


def ls(
    ctx: ProjectContext,
    filter: str | None = None,
    sort: str | None = None,
    limit: int | None = None,
) -> list[Run]:
    return listing(ctx, filter, sort, limit)[0]


def listing(
    ctx: ProjectContext,
    filter: str | None = None,
    sort: str | None = None,
    limit: int | None = None,
) -> tuple[list[Run], int]:
    """(the runs, how many records are too damaged to list: 'datmo fsck' names them)."""
    where, params = compile_filter(filter)
    order, order_params = compile_sort(sort)
    if limit is not None and limit < 1:
        raise UsageError("--limit must be at least 1")
    idx = index(ctx)
    try:
        with gc_paused():
            found = [effective(r) for r in idx.query(where, params, order, order_params, limit)]
        return found, idx.damaged()
    finally:
        idx.close()


def request_stop(ctx: ProjectContext, run: Run) -> bool:
    """Ask a run's supervisor to stop the task; False when no supervisor answers."""
    sup = run.supervisor
    if not alive(sup.get("pid"), sup.get("start")):
        return False
    path = data_dir(ctx, run.id) / STOP_FILE
    with contextlib.suppress(FileNotFoundError):
        path.touch()
    if sup.get("launcher"):
        return True  # `datmo run` is still handing over: the supervisor sees the file at once
    with contextlib.suppress(ProcessLookupError):
        os.kill(sup["pid"], signal.SIGTERM)
    return True


def stop(ctx: ProjectContext, ref: str | None, all: bool = False, wait: float = 60.0) -> list[Run]:
    """Stop running runs (or clean up after LOST ones); returns the final records."""
    if all:
        targets = [r for r in ls(ctx, "status=RUNNING") if r.status in (RUNNING, LOST)]
    elif ref:
        targets = [get(ctx, ref)]
        if targets[0].finished and targets[0].status != LOST:
            raise DatmoError(
                f"run {targets[0].id[:8]} is not running (it is {targets[0].status}); "
                "nothing to stop"
            )
    else:
        raise UsageError("give a run id, or --all")
    asked = [r for r in targets if request_stop(ctx, r)]
    deadline = time.monotonic() + wait
    out = []
    for run in targets:
        if run in asked:
            while time.monotonic() < deadline:
                current = get(ctx, run.id)
                if current.finished:
                    break
                time.sleep(0.1)
        out.append(settle_lost(ctx, get(ctx, run.id)))
    return out


def settle_lost(ctx: ProjectContext, run: Run) -> Run:
    """Record a LOST run as such and remove what its supervisor left behind."""
    if run.status != LOST:
        return run
    if run.executor == "docker":
        with contextlib.suppress(Exception):  # no engine now: the record still settles
            from datmo.core.executor.docker import remove_run_containers

            # By label too: the supervisor may have died before it recorded the container.
            remove_run_containers(run.id, run.container_id)
    task = run.process
    if task and alive(task.get("pid"), task.get("start")):
        # A local task outlived its supervisor: end its whole process group.
        for sig, pause in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(task["pid"], sig)
            deadline = time.monotonic() + pause
            while time.monotonic() < deadline and alive(task.get("pid"), task.get("start")):
                time.sleep(0.1)
    stored = Run.from_dict(ctx.store.read_entity(KIND, run.id))
    if stored.status == RUNNING:
        from datmo.core.entity.base import utcnow

        save(ctx, run.evolve(ended_at=run.ended_at or utcnow()))
    return run


def delete(ctx: ProjectContext, ref: str) -> Run:
    run = get(ctx, ref)
    if run.status == RUNNING:
        raise DatmoError(
            f"run {run.id[:8]} is running; stop it first with 'datmo stop {run.id[:8]}'"
        )
    discard(ctx, run.id)
    return run


def discard(ctx: ProjectContext, run_id: str) -> None:
    """Remove a run that never started its task, as if it had not been made."""
    with ctx.store.lock(), deferred_interrupt():
        ctx.store.delete_entity(KIND, run_id)
        idx = index(ctx)
        try:
            idx.remove(run_id)
        finally:
            idx.close()
    shutil.rmtree(data_dir(ctx, run_id), ignore_errors=True)
