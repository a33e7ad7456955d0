"""The run controller: a run is the state before (a snapshot), a task performed on it,
and the state after (another snapshot).

`start` refuses what it can before any record exists, takes the before snapshot, makes
the record and hands the task to the task controller. In the supervisor process,
`supervise` has the task executed and records how it ended, with the after snapshot.
Then: listing, stop, delete.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import TYPE_CHECKING, Any

from datmo.core.entity.base import new_id, utcnow
from datmo.core.entity.run import FAILED, LOST, RUNNING, STOPPED, SUCCESS, Run
from datmo.core.storage import runs as records
from datmo.core.storage.project import ProjectContext
from datmo.core.storage.query import compile_filter, compile_sort
from datmo.core.task.process import alive, effective, start_time
from datmo.errors import DatmoError, UsageError

# Listing runs needs none of these: `datmo ls` stays free of the task machinery.
if TYPE_CHECKING:
    from datmo.core.controller.task import Progress
    from datmo.core.task.spec import RunSpec
    from datmo.core.task.supervisor import Ended

KIND = records.KIND


def get(ctx: ProjectContext, ref: str) -> Run:
    """A run's record as it stands now (a prefix of its id will do)."""
    return effective(records.read(ctx.store, ref))


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
    found, damaged = records.query(ctx.store, where, params, order, order_params, limit)
    return [effective(r) for r in found], damaged


# -- starting ------------------------------------------------------------------------


def resolve_environment(
    ctx: ProjectContext, spec: RunSpec, progress: Progress | None
) -> tuple[str | None, str | None]:
    """(environment id, image id): the image is built only if the environment changed."""
    from datmo.core.controller import environment

    env = environment.resolve(ctx, spec.environment)
    if spec.executor != "docker":
        return env.id, None
    return env.id, environment.ensure_image(ctx, env.id, progress)


def start(
    ctx: ProjectContext,
    spec: RunSpec,
    progress: Progress | None = None,
    before_snapshot_id: str | None = None,
    workdir: str | None = None,
    rerun_of: str | None = None,
    image_id: str | None = None,
) -> Run:
    """Start a run and return its record once the task is running."""
    from datmo.core.controller import task

    # The supervisor starts first and loads what it needs (Python, the Docker SDK, a
    # client) while this process checks the image and takes the before snapshot.
    proc = task.start_supervisor(ctx, spec.executor)
    try:
        run = _prepare(ctx, spec, progress, before_snapshot_id, workdir, rerun_of, image_id)
    except BaseException:
        task.dismiss(proc)
        raise
    return task.hand_over(ctx, run, spec, proc)


def _prepare(
    ctx: ProjectContext,
    spec: RunSpec,
    progress: Progress | None,
    before_snapshot_id: str | None,
    workdir: str | None,
    rerun_of: str | None,
    image_id: str | None,
) -> Run:
    from datmo.core.controller import snapshot

    t0 = time.perf_counter()
    if image_id is None:
        env_id, image_id = resolve_environment(ctx, spec, progress)
    else:
        env_id = spec.environment
    t1 = time.perf_counter()
    if before_snapshot_id is None:
        before_snapshot_id = snapshot.create(
            ctx,
            f"before run: {spec.command}"[:200],
            config=spec.config,
            hidden=True,
            reuse_state=True,
        ).snapshot.id
    t2 = time.perf_counter()
    now = utcnow()
    run = Run(
        id=new_id(),
        command=spec.command,
        created_at=now,
        type=spec.type,
        executor=spec.executor,
        environment_id=env_id,
        image_id=image_id,
        message=spec.message,
        config=spec.config,
        options=spec.options(),
        env=spec.public_env(),
        secret_env=spec.secret_names(),
        before_snapshot_id=before_snapshot_id,
        started_at=now,
        # Until the supervisor takes over, this process answers for the run.
        supervisor={"pid": os.getpid(), "start": start_time(os.getpid()), "launcher": True},
        workdir=workdir,
        rerun_of=rerun_of,
        timings={"environment_s": round(t1 - t0, 4), "before_snapshot_s": round(t2 - t1, 4)},
    )
    records.make_data(ctx.store, run.id)
    return records.save(ctx.store, run)


# -- in the supervisor process -------------------------------------------------------


def supervise(ctx: ProjectContext, run_id: str, env: dict[str, str], fg_pid: int, fd: int) -> int:
    """The supervisor's whole job: the task to its end, then the final record. Its exit
    code; fd: where `datmo run` waits for the one-line answer."""
    import traceback

    from datmo.core.controller import task

    run = get(ctx, run_id)
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
            now = get(ctx, run_id)
            if not now.finished or now.status == LOST:
                failed = now.evolve(
                    status=FAILED, ended_at=utcnow(), error=f"supervisor failed: {e}"
                )
                records.save(ctx.store, failed)
        except Exception:
            traceback.print_exc()
        return 125


def _supervise(ctx: ProjectContext, run: Run, env: dict[str, str], fg_pid: int, fd: int) -> int:
    import shutil

    from datmo.core.controller import task

    done = task.execute(ctx, run, env, fg_pid, fd)
    if done is None:
        return 125
    run, ended = done.run, done.ended
    t0 = time.perf_counter()
    changes = _outcome(ctx, run, ended)
    snapshot_s = time.perf_counter() - t0
    try:  # the record is final only once nothing of the run is left behind
        done.handle.cleanup()
        if run.rerun_of and run.workdir:
            shutil.rmtree(ctx.root / run.workdir, ignore_errors=True)
    finally:
        # The task's part, from creating its container (or process) to removing it.
        task_s = done.seconds + (time.perf_counter() - t0 - snapshot_s)
        timings = {
            **run.timings,
            "task_s": round(task_s, 4),
            "after_snapshot_s": round(snapshot_s, 4),
        }
        records.save(ctx.store, run.evolve(**changes, timings=timings))
    return ended.code


def _outcome(ctx: ProjectContext, run: Run, ended: Ended) -> dict[str, Any]:
    """What the final record says: status, code, metrics, the after snapshot."""
    import json

    from datmo.core.controller import snapshot, task
    from datmo.core.storage.fsutil import atomic_write_bytes
    from datmo.core.task.metrics import collect

    data = records.data_dir(ctx.store, run.id)
    found = ended.capture.found if ended.capture else []
    reported = collect(data / records.METRICS, found)
    if reported.series:
        atomic_write_bytes(
            data / "series.json", json.dumps(reported.series).encode(), ctx.store.owner
        )
    code = ended.code
    status = STOPPED if ended.stopped else SUCCESS if code == 0 else FAILED
    config = {**run.config, **reported.config}
    end = utcnow()
    changes: dict[str, Any] = {
        "status": status,
        "exit_code": code,
        "ended_at": end,
        "config": config,
        "metrics": reported.metrics,
        "duration_s": _duration(run.started_at, end),
    }
    try:
        after = snapshot.create(
            ctx,
            f"after run {run.id[:8]}: {run.command}"[:200],
            config=config,
            metrics=reported.metrics,
            hidden=True,
            run_id=run.id,
            tree=task.workdir(ctx, run),
        )
        # The snapshot adds what the task left in config.json and stats.json.
        changes.update(
            after_snapshot_id=after.snapshot.id,
            config=after.snapshot.config,
            metrics=after.snapshot.metrics,
        )
    except Exception as e:  # the task's outcome is still recorded, with why the snapshot failed
        changes["error"] = f"after snapshot failed: {e}"
    if ended.log_error:
        changes["error"] = "; ".join(filter(None, [changes.get("error"), ended.log_error]))
    return changes


def _duration(start: str | None, end: str) -> float | None:
    from datetime import datetime

    if not start:
        return None
    parse = datetime.fromisoformat
    return round(
        (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds(), 3
    )


# -- stop and delete -----------------------------------------------------------------


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
    from datmo.core.controller import task

    asked = [r for r in targets if task.request_stop(ctx, r)]
    deadline = time.monotonic() + wait
    out = []
    for run in targets:
        if run in asked:
            while time.monotonic() < deadline:
                if get(ctx, run.id).finished:
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
    leftover = run.process
    if leftover and alive(leftover.get("pid"), leftover.get("start")):
        # A local task outlived its supervisor: end its whole process group.
        for sig, pause in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(leftover["pid"], sig)
            deadline = time.monotonic() + pause
            while time.monotonic() < deadline and alive(leftover.get("pid"), leftover.get("start")):
                time.sleep(0.1)
    if records.read(ctx.store, run.id).status == RUNNING:
        records.save(ctx.store, run.evolve(ended_at=run.ended_at or utcnow()))
    return run


def delete(ctx: ProjectContext, ref: str) -> Run:
    run = get(ctx, ref)
    if run.status == RUNNING:
        raise DatmoError(
            f"run {run.id[:8]} is running; stop it first with 'datmo stop {run.id[:8]}'"
        )
    records.discard(ctx.store, run.id)
    return run
