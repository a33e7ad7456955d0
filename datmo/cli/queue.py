"""`datmo queue ...`: staged runs and the workers that start them."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import click

from datmo.cli.output import echo, format_option, note, render

if TYPE_CHECKING:
    from datmo.core.controller.worker import Worker
    from datmo.core.storage.project import ProjectContext


@click.group()
def queue() -> None:
    """Runs staged with 'datmo run --queue', and the workers that start them.

    Example: datmo run --queue -c lr=0.1 "python train.py"; datmo queue start -j 2
    """


@queue.command()
@click.option("-j", "--jobs", type=click.IntRange(1), default=1, help="Runs at a time.")
@click.option("--gpus", metavar="0,1", help="GPUs to hand out (default: every one it sees).")
@click.option("-d", "--detach", is_flag=True, help="Work in the background.")
def start(jobs: int, gpus: str | None, detach: bool) -> None:
    """Start a worker: it starts staged runs, JOBS at a time, giving each the GPUs it asks
    for, until the queue is empty. Exits 0 when all its runs succeeded, 1 when one failed
    or was lost, 130 after Ctrl-C (which stops its runs).

    Example: datmo queue start -j 2 --gpus 0,1
    """
    from datmo.core.controller import queue as ctl
    from datmo.core.controller import worker
    from datmo.core.controller.project import open_project

    ctx = open_project()
    pool = worker.gpu_pool(gpus)
    if detach:
        args = [sys.executable, "-m", "datmo", "queue", "start", "-j", str(jobs)]
        if gpus:
            args += ["--gpus", gpus]
        log = ctx.store.path(ctl.FOLDER, "worker.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                args,
                cwd=ctx.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        note(f"worker started in the background (pid {proc.pid}); see 'datmo queue ls'")
        note(f"its log: {log}")
        return
    w = worker.Worker(ctx, jobs, pool, say=note)
    ctl.register(ctx, w)
    note(f"worker {w.id} started: {jobs} at a time, GPUs {','.join(pool) or 'none'}")
    try:
        code = _work(ctx, w)
    finally:
        ctl.unregister(ctx, w.id)
    sys.exit(code)


def _work(ctx: ProjectContext, w: Worker) -> int:
    """The worker's loop; Ctrl-C stops its runs and waits for their records."""
    from datmo.core.controller import queue as ctl

    stopped = [""]

    def should_stop() -> str:
        return stopped[0] or ctl.stop_note(ctx, w.id)

    while True:
        try:
            return w.run(should_stop)
        except KeyboardInterrupt:
            note("stopping the worker's runs (each is recorded STOPPED)...")
            stopped[0] = "now"


@queue.command(name="ls")
@click.option("--limit", type=click.IntRange(1), help="Show at most this many.")
@format_option
def ls_cmd(limit: int | None, fmt: str) -> None:
    """Staged runs in the order workers take them, then the queued runs running now.

    Example: datmo queue ls --limit 20
    """
    from datmo.core.controller import queue as ctl
    from datmo.core.controller.project import open_project

    ctx = open_project()
    found = ctl.ls(ctx, limit)
    table = fmt == "table"
    rows = [
        {
            "id": r.id[:8] if table else r.id,
            "status": r.status,
            "priority": r.queue.get("priority", 0),
            "num_gpus": r.options.get("num_gpus", 0),
            "gpus": ",".join(r.queue.get("gpus") or []),
            "command": r.command[:37] + "..." if table and len(r.command) > 40 else r.command,
            "created_at": r.created_at[:19].replace("T", " ") if table else r.created_at,
        }
        for r in found
    ]
    cols = ["id", "status", "priority", "num_gpus", "gpus", "command", "created_at"]
    echo(render(rows, cols, fmt))
    workers = ctl.alive_workers(ctx)
    if fmt == "table":
        for w in workers:
            gpus = ",".join(w.gpus) or "none"
            note(f"worker {w.id} (pid {w.pid}): {w.slots} at a time, GPUs {gpus}")
        if not workers and any(r.status == "QUEUED" for r in found):
            note("no worker is running; start one with 'datmo queue start'")


@queue.command()
@click.option("--now", is_flag=True, help="Stop the runs the workers started too.")
def stop(now: bool) -> None:
    """Tell the workers to start no more runs; the running ones finish (or --now stop).

    Example: datmo queue stop, or datmo queue stop --now
    """
    from datmo.core.controller import queue as ctl
    from datmo.core.controller.project import open_project

    told = ctl.stop(open_project(), now)
    echo(f"told {len(told)} worker(s) to stop" + (" and to stop their runs" if now else ""))


@queue.command()
@click.argument("run_ids", nargs=-1, required=True)
def rm(run_ids: tuple[str, ...]) -> None:
    """Take staged runs out of the queue (QUEUED ones only).

    Example: datmo queue rm 3f2a 9c1d
    """
    from datmo.core.controller import queue as ctl
    from datmo.core.controller.project import open_project

    ctx = open_project()
    for ref in run_ids:
        echo(f"removed run {ctl.remove(ctx, ref).id[:8]} from the queue")


@queue.command()
def clear() -> None:
    """Take every staged run out of the queue.

    Example: datmo queue clear
    """
    from datmo.core.controller import queue as ctl
    from datmo.core.controller.project import open_project

    echo(f"removed {ctl.clear(open_project())} staged run(s)")
