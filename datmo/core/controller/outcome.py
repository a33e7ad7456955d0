"""How a run ends, in its supervisor process: the task controller executes the task;
meanwhile its metrics reach the record as they are logged (`datmo ls` shows a RUNNING
run's latest values); at the end the record says what happened, with the after snapshot.

What the record may say is only what happened: the metrics of this run's task (a
stats.json counts only if the task wrote it), the config its task was given, and, where
the task logged another value for a config key, the task's value, with a note of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import traceback
from typing import Any

from datmo.core.controller import task
from datmo.core.entity.base import utcnow
from datmo.core.entity.run import FAILED, LOST, STOPPED, SUCCESS, Run
from datmo.core.storage import runs as records
from datmo.core.storage import series
from datmo.core.storage.project import ProjectContext
from datmo.core.task.metrics import MetricsReader, Reported
from datmo.core.task.process import BEAT_S, effective, this_host
from datmo.errors import DatmoError

# What a Slurm job's signals mean for the record (executor/slurm.py asks for SIGUSR1).
SLURM_STOPS = {
    "timeout": "TIMEOUT: the job neared its time limit; the task was stopped, its after "
    "snapshot taken",
    "cancel": "cancelled in Slurm (scancel, or preempted)",
}
FLUSH_S = 1.0  # how often a RUNNING run's record takes in new metrics, at most
SLURM_FLUSH_S = 5.0
LOCK_WAIT_S = 0.2


class Live:
    """Follows the run's metrics file; puts the latest values into the record."""

    def __init__(self, ctx: ProjectContext, run: Run) -> None:
        self.ctx, self.run_id = ctx, run.id
        path = records.data_dir(ctx.store, run.id) / records.METRICS
        self.reader = MetricsReader(path, run.config.keys())
        self.shown: tuple[Any, Any] | None = None
        self.last_flush = 0.0
        self.beat = time.time()
        # On a cluster the record is on a network filesystem: written less often.
        self.flush_s = SLURM_FLUSH_S if run.executor == "slurm" else FLUSH_S

    def poll(self) -> None:
        self.reader.read()
        if time.monotonic() - self.last_flush < self.flush_s:
            return
        self.last_flush = time.monotonic()
        got = self.reader.result()
        now = (got.metrics, got.ranges)
        beat = time.time() - self.beat >= BEAT_S
        if (not got.metrics or now == self.shown) and not beat:
            return
        try:
            # Only a glimpse for listings: never hold up the task's supervision for the
            # lock (a big snapshot may hold it); the next poll tries again. The heartbeat
            # tells datmo on other hosts that this supervisor is alive.
            changes: dict[str, Any] = {"metrics": got.metrics, "metric_ranges": got.ranges}
            with self.ctx.store.lock(LOCK_WAIT_S):
                run = records.read(self.ctx.store, self.run_id)
                stamp = time.time()
                changes["supervisor"] = {**run.supervisor, "beat": stamp}
                if not got.metrics:
                    changes = {"supervisor": changes["supervisor"]}
                records.save(self.ctx.store, run.evolve(**changes))
            self.beat = stamp
            self.shown = now
        except (DatmoError, OSError):
            pass


def supervise(ctx: ProjectContext, run_id: str, env: dict[str, str], fg_pid: int, fd: int) -> int:
    """The supervisor's whole job: the task to its end, then the final record. Its exit
    code; fd: where `datmo run` waits for the one-line answer."""
    run = effective(records.read(ctx.store, run_id))
    try:
        return _supervise(ctx, run, env, fg_pid, fd)
    except BaseException as e:
        traceback.print_exc()
        task.handshake(fd, f"ERR supervisor failed: {e}")
        if run.executor == "docker":  # never leave a container behind
            try:
                from datmo.core.executor.docker import remove_run_containers

                remove_run_containers(run_id, None)
            except Exception:
                traceback.print_exc()
        try:
            now = effective(records.read(ctx.store, run_id))
            if not now.finished or now.status == LOST:
                why = f"supervisor failed: {e}"
                records.save(ctx.store, now.evolve(status=FAILED, ended_at=utcnow(), error=why))
        except Exception:
            traceback.print_exc()
        return 125


def _supervise(ctx: ProjectContext, run: Run, env: dict[str, str], fg_pid: int, fd: int) -> int:
    live = Live(ctx, run)
    done = task.execute(ctx, run, env, fg_pid, fd, on_poll=live.poll)
    if done is None:
        return 125
    run, ended = done.run, done.ended
    t0 = time.perf_counter()
    live.reader.read()
    changes = _outcome(ctx, run, done, live.reader.result())
    snapshot_s = time.perf_counter() - t0
    try:  # the record is final only once nothing of the run is left behind
        done.handle.cleanup()
        kept = run.options.get("keep_workdir") and changes.get("status") != SUCCESS
        if run.workdir and not kept:
            from datmo.core.controller import workcopy

            workcopy.remove(ctx, run.workdir)
    finally:
        # The task's part, from creating its container (or process) to removing it.
        task_s = done.seconds + (time.perf_counter() - t0 - snapshot_s)
        timings = {
            **run.timings,
            "task_s": round(task_s, 4),
            "after_snapshot_s": round(snapshot_s, 4),
        }
        with ctx.store.lock():
            now = records.read(ctx.store, run.id)
            # A requeued Slurm job may have started the run again meanwhile: its record
            # is the new attempt's now.
            if _mine(now):
                records.save(ctx.store, now.evolve(**changes, timings=timings))
    return ended.code


def _mine(run: Run) -> bool:
    sup = run.supervisor
    return sup.get("pid") == os.getpid() and sup.get("host") in (None, this_host())


def overridden(given: dict[str, Any], logged: dict[str, Any]) -> dict[str, list[Any]]:
    """Config keys the task logged with another value than it was given: key: [given, logged]."""
    return {k: [given[k], v] for k, v in logged.items() if k in given and given[k] != v}


def _outcome(ctx: ProjectContext, run: Run, done: task.Execution, got: Reported) -> dict[str, Any]:
    """What the final record says: status, code, metrics, config, the after snapshot."""
    from datmo.core.controller import snapshot

    # Every line the task logged is in by now: the series, read by range, are made whole.
    with contextlib.suppress(OSError):  # derived data: a reader builds it again later
        series.sync(ctx.store, run.id)
    ended = done.ended
    status = STOPPED if ended.stopped else SUCCESS if ended.code == 0 else FAILED
    # Stopped by Slurm, not by you (a time limit is a failure). Slurm may signal the
    # task itself as well, so the task can end before the supervisor stops it.
    why = SLURM_STOPS.get(done.stop_why)
    if why:
        status = FAILED if done.stop_why == "timeout" else STOPPED
    config = {**run.config, **got.config}
    changed = overridden(run.config, got.config)
    if changed:
        _say(ctx, run, changed)
    end = utcnow()
    changes: dict[str, Any] = {
        "status": status,
        "exit_code": ended.code,
        "ended_at": end,
        "config": config,
        "config_overridden": changed,
        "metrics": got.metrics,
        "metric_ranges": got.ranges,
        "duration_s": _duration(run.started_at, end),
    }
    try:
        after = snapshot.create(
            ctx,
            f"after run {run.id[:8]}: {run.command}"[:200],
            config=config,
            read_config=False,
            metrics=got.metrics,
            read_stats=done.stats_written,
            hidden=True,
            made_by="run",
            run_id=run.id,
            tree=task.workdir(ctx, run),
        )
        # The snapshot adds the metrics of a stats.json the task wrote.
        changes.update(after_snapshot_id=after.snapshot.id, metrics=after.snapshot.metrics)
    except Exception as e:  # the task's outcome is still recorded, with why the snapshot failed
        changes["error"] = f"after snapshot failed: {e}"
    if ended.log_error or why:
        changes["error"] = "; ".join(filter(None, [why, changes.get("error"), ended.log_error]))
    return changes


def override_note(changed: dict[str, list[Any]]) -> str:
    """One line: which given config values the task's own logged values replaced."""
    shown = ", ".join(f"{k}={json.dumps(g)} -> {json.dumps(v)}" for k, (g, v) in changed.items())
    return f"config overridden by the task: {shown} (the record keeps what the task logged)"


def _say(ctx: ProjectContext, run: Run, changed: dict[str, list[Any]]) -> None:
    """Into the run's log, so `datmo run` and `datmo logs` show it."""
    line = f"[datmo] {override_note(changed)}\n"
    try:
        with open(records.log_path(ctx.store, run.id), "ab") as log:
            log.write(line.encode())
    except OSError:
        pass  # a full disk: the record still says it


def _duration(start: str | None, end: str) -> float | None:
    from datetime import datetime

    if not start:
        return None
    parse = datetime.fromisoformat
    return round(
        (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds(), 3
    )
