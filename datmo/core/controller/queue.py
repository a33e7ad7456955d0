"""The run queue: `datmo run --queue` stages a run (QUEUED, its before snapshot taken
now, so later edits do not leak in), and workers (`datmo queue start`) start them.

No broker, no server: the queue is the run records themselves, and a worker is a datmo
process; `queue start` in another terminal adds one. Each worker writes a small record
(`.datmo/queue/<id>.json`) so `queue ls` and `queue stop` can find it; `queue stop`
leaves a note beside it that the worker reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from datmo.core.controller import run as runs
from datmo.core.entity.base import utcnow
from datmo.core.entity.run import QUEUED, Run
from datmo.core.storage import runs as records
from datmo.core.storage.fsutil import atomic_write_bytes
from datmo.core.storage.project import ProjectContext
from datmo.core.task.process import alive, start_time, this_host
from datmo.errors import DatmoError

if TYPE_CHECKING:  # listing the queue loads none of the worker's machinery
    from datmo.core.controller.task import Progress
    from datmo.core.controller.worker import Worker
    from datmo.core.task.spec import RunSpec

FOLDER = "queue"  # in .datmo


def stage(ctx: ProjectContext, spec: RunSpec, progress: Progress | None = None) -> Run:
    """A run staged for a worker: checked, its before snapshot and record made now."""
    if spec.detach or spec.interactive:
        from datmo.errors import UsageError

        raise UsageError("--queue stages the run for a worker; drop -d and -i")
    return runs.prepare(ctx, spec, progress, queued=True)


def ls(ctx: ProjectContext, limit: int | None = None) -> list[Run]:
    """Staged runs in the order workers take them, then the running ones they started."""
    staged = records.queued(ctx.store, limit=limit)
    if limit and len(staged) >= limit:
        return staged
    started = [r for r in runs.ls(ctx, "status=RUNNING") if r.queue]
    found = staged + started
    return found[:limit] if limit else found


def remove(ctx: ProjectContext, ref: str) -> Run:
    """Take a staged run out of the queue (only a QUEUED one)."""
    with ctx.store.lock():
        run = runs.get(ctx, ref)
        if run.status != QUEUED:
            raise DatmoError(
                f"run {run.id[:8]} is {run.status}, not QUEUED; 'datmo stop {run.id[:8]}' "
                "stops a running one"
            )
        records.discard(ctx.store, run.id)
    return run


def clear(ctx: ProjectContext) -> int:
    staged = records.queued(ctx.store)
    for run in staged:
        remove(ctx, run.id)
    return len(staged)


# -- workers ------------------------------------------------------------------------


@dataclass
class WorkerInfo:
    id: str
    pid: int
    host: str
    slots: int
    gpus: list[str]
    started_at: str
    sweep_id: str | None = None


def _path(ctx: ProjectContext, worker_id: str, suffix: str = ".json") -> Any:
    return ctx.store.path(FOLDER, f"{worker_id}{suffix}")


def register(ctx: ProjectContext, w: Worker) -> None:
    doc = {
        "id": w.id,
        "pid": os.getpid(),
        "start": start_time(os.getpid()),
        "host": w.host,
        "slots": w.slots,
        "gpus": w.gpus,
        "started_at": utcnow(),
        "sweep_id": w.sweep_id,
    }
    ctx.store.write_json(f"{FOLDER}/{w.id}.json", doc)


def unregister(ctx: ProjectContext, worker_id: str) -> None:
    for suffix in (".json", ".stop"):
        _path(ctx, worker_id, suffix).unlink(missing_ok=True)


def stop_note(ctx: ProjectContext, worker_id: str) -> str:
    """'' to go on, 'drain' to start no more runs, 'now' to stop its runs too."""
    try:
        return str(_path(ctx, worker_id, ".stop").read_text().strip())
    except FileNotFoundError:
        return ""


def alive_workers(ctx: ProjectContext) -> list[WorkerInfo]:
    """The workers of this project that run on this machine now (dead ones' records go)."""
    folder = ctx.store.path(FOLDER)
    found = []
    for name in sorted(os.listdir(folder)) if folder.is_dir() else []:
        if not name.endswith(".json"):
            continue
        try:
            doc = ctx.store.read_json(f"{FOLDER}/{name}")
        except DatmoError:
            continue
        if doc.get("host") != this_host():
            continue  # another machine's: not ours to judge
        if not alive(doc.get("pid"), doc.get("start")):
            unregister(ctx, name[:-5])
            continue
        keys = ("id", "pid", "host", "slots", "gpus", "started_at", "sweep_id")
        found.append(WorkerInfo(**{k: doc.get(k) for k in keys}))
    return found


def stop(ctx: ProjectContext, now: bool = False) -> list[WorkerInfo]:
    """Tell every worker to start no more runs (now: and stop the ones they started)."""
    found = alive_workers(ctx)
    for w in found:
        note = b"now" if now else b"drain"
        atomic_write_bytes(_path(ctx, w.id, ".stop"), note, ctx.store.owner, durable=False)
    return found
