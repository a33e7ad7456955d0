"""The run controller: a run is the state before (a snapshot), a task performed on it,
and the state after (another snapshot).

`start` refuses what it can before any record exists, takes the before snapshot, makes
the record and hands the task to the task controller; how the run ends (its metrics,
the after snapshot, the final record) is controller/outcome.py. Then: listing, stop,
delete.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import TYPE_CHECKING, Any

from datmo.core.entity.base import new_id, utcnow
from datmo.core.entity.run import LOST, QUEUED, RUNNING, STOPPED, Run
from datmo.core.storage import runs as records
from datmo.core.storage.project import ProjectContext
from datmo.core.task.process import alive, effective, me, this_host
from datmo.errors import DatmoError, UsageError

# Listing runs needs none of these: `datmo ls` stays free of the task machinery.
if TYPE_CHECKING:
    from datmo.core.controller.task import Progress
    from datmo.core.entity.snapshot import Snapshot
    from datmo.core.executor.slurm import JobOptions
    from datmo.core.task.spec import RunSpec

KIND = records.KIND


def get(ctx: ProjectContext, ref: str) -> Run:
    """A run's record as it stands now (a prefix of its id will do)."""
    return settled(ctx, [effective(records.read(ctx.store, ref))])[0]


def settled(ctx: ProjectContext, found: list[Run]) -> list[Run]:
    """Runs as they stand: on Slurm, with what Slurm knows that their records cannot say
    (one query, and only when a run needs it)."""
    if not any(r.executor == "slurm" and _open(r) for r in found):
        return found
    from datmo.core.controller import slurm

    return slurm.sync(ctx, found)


def ls(
    ctx: ProjectContext,
    filter: str | None = None,
    sort: str | None = None,
    limit: int | None = None,
) -> list[Run]:
    return listing(ctx, filter, sort, limit).runs


def listing(
    ctx: ProjectContext,
    filter: str | None = None,
    sort: str | None = None,
    limit: int | None = None,
    sweep_id: str | None = None,
    offset: int = 0,
    total: bool = False,
) -> records.Listing:
    """The runs a filter and sort select, with how many records are too damaged to list
    and the filter's keys that no run has."""
    if limit is not None and limit < 1:
        raise UsageError("--limit must be at least 1")
    found = records.query(ctx.store, filter, sort, limit, sweep_id, offset, total)
    found.runs = settled(ctx, [effective(r) for r in found.runs])
    return found


def _open(run: Run) -> bool:
    """Not yet recorded to an end: QUEUED, or RUNNING with a silent supervisor (LOST as
    judged now, no end written)."""
    return run.status == QUEUED or (run.status == LOST and not run.ended_at)


def keys(ctx: ProjectContext) -> dict[str, list[str]]:
    """The config and metric keys the project's runs have."""
    return records.keys(ctx.store)


def describe(ctx: ProjectContext, ref: str, message: str) -> Run:
    """Change a run's message (its other fields say what happened, and stay)."""
    from datmo.core.util import params

    if not message.strip():
        raise UsageError("the message cannot be empty")
    text = params.text(message, "the message")
    with ctx.store.lock():
        run = records.read(ctx.store, ref)
        return effective(records.update(ctx.store, run.id, message=text))


# -- starting ------------------------------------------------------------------------


def resolve_environment(
    ctx: ProjectContext, spec: RunSpec, progress: Progress | None
) -> tuple[str | None, str | None]:
    """(environment id, image id): the image is built only if the environment changed.
    A local run has neither: it runs in this machine's Python, which its record's
    platform describes (interpreter, packages), not in a Docker environment."""
    from datmo.core.controller import environment, image

    if spec.executor != "docker":
        if spec.environment:
            raise UsageError(
                "--environment picks a Docker environment; a local run uses this machine's "
                "own Python (drop --environment, or run with --executor docker)"
            )
        return None, None
    env = environment.resolve(ctx, spec.environment)
    return env.id, image.ensure_image(ctx, env.id, progress)


def start(
    ctx: ProjectContext,
    spec: RunSpec,
    progress: Progress | None = None,
    before_snapshot_id: str | None = None,
    workdir: str | None = None,
    rerun_of: str | None = None,
    image_id: str | None = None,
    run_id: str | None = None,
) -> Run:
    """Start a run and return its record once the task is running."""
    from datmo.core.controller import task

    # The supervisor starts first and loads what it needs (Python, the Docker SDK, a
    # client) while this process checks the image and takes the before snapshot.
    proc = task.start_supervisor(ctx, spec.executor)
    try:
        run = prepare(
            ctx,
            spec,
            progress,
            before_snapshot_id=before_snapshot_id,
            workdir=workdir,
            rerun_of=rerun_of,
            image_id=image_id,
            run_id=run_id,
        )
    except BaseException:
        task.dismiss(proc)
        raise
    try:
        return task.hand_over(ctx, run, proc, spec.env, spec.detach)
    except BaseException:
        if run.workdir and not rerun_of:
            from datmo.core.controller import workcopy

            workcopy.remove(ctx, run.workdir)
        raise


def submit_to_slurm(
    ctx: ProjectContext, spec: RunSpec, options: JobOptions, progress: Progress | None
) -> Run:
    """`datmo run --executor slurm`: checked with Slurm first (nothing is made when it
    refuses), staged (its before snapshot taken now, your tree untouched), submitted;
    QUEUED until Slurm starts it."""
    from datmo.core.controller import slurm

    slurm.refuse_local_options(spec)
    slurm.client.check(options)
    staged = prepare(ctx, spec, progress, queued=True)
    slurm.submit(ctx, [staged], options, None, progress)
    return records.read(ctx.store, staged.id)


def _queue_fields(spec: RunSpec, point: int | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"priority": spec.priority, "retry": spec.retry, "attempts": 0}
    if point is not None:
        fields["point"] = point  # which of its sweep's points it is
    return fields


def busy(ctx: ProjectContext) -> Run | None:
    """A run working in the working tree now, if any."""
    from datmo.core.task.process import effective

    for found in records.query(ctx.store, "status=RUNNING", limit=None).runs:
        if not found.workdir and effective(found).status == RUNNING:
            return found
    return None


def prepare(
    ctx: ProjectContext,
    spec: RunSpec,
    progress: Progress | None,
    *,
    before_snapshot_id: str | None = None,
    workdir: str | None = None,
    rerun_of: str | None = None,
    image_id: str | None = None,
    run_id: str | None = None,
    queued: bool = False,
    base: Snapshot | None = None,
    sweep_id: str | None = None,
    point: int | None = None,
    save: bool = True,
    before_s: float | None = None,
) -> Run:
    """Everything before the task: checks, config, image, before snapshot, working copy,
    the record. queued: stage it (QUEUED, no working copy yet) for a queue worker;
    base: a capture of the tree to derive the before snapshot from (a sweep's);
    save=False: the caller writes the record (with others: records.save_many);
    before_s: the time its before snapshot took, when the caller made it."""
    from pathlib import Path

    from datmo.core.controller import runconfig, snapshot, staging, workcopy

    t0 = time.perf_counter()
    run_id = run_id or new_id()
    tree = ctx.root / workdir if workdir else ctx.root
    # Refused before anything is made: a bad config file, a placeholder that names no key.
    rc = runconfig.prepare(spec, tree, Path.cwd(), again=rerun_of is not None)
    if image_id is None:
        env_id, image_id = resolve_environment(ctx, spec, progress)
    else:
        env_id = spec.environment
    t1 = time.perf_counter()
    isolated = queued or spec.isolated or workdir is not None
    if not isolated and before_snapshot_id is None:
        other = busy(ctx)
        if other is not None:
            isolated = True
            if progress:
                progress(
                    f"run {other.id[:8]} is running in your working tree, so this run works "
                    f"in a copy of its own ({workcopy.relpath(run_id)})"
                )
    message = staging.message_of(rc)
    if before_snapshot_id is None and isolated:
        # The tree as it is, with the run's config file in the snapshot only: yours stays.
        base = base or staging.capture(ctx, message, progress)
        made = staging.before_snapshot(ctx, base, rc, message)
        before_snapshot_id = made.id
    elif before_snapshot_id is None:
        runconfig.write_file(rc, ctx.store.owner)  # so the snapshot holds what the task reads
        said = rc.note(tree)
        if said and progress:
            progress(said)
        before_snapshot_id = snapshot.create(
            ctx,
            message,
            config=rc.values,
            read_config=False,
            hidden=True,
            made_by="run",
            reuse_state=True,
        ).snapshot.id
    if isolated and workdir is None and not queued:
        workdir = workcopy.make(ctx, snapshot.get(ctx, before_snapshot_id), run_id)
    t2 = time.perf_counter()
    now = utcnow()
    launcher = me(launcher=True)
    run = Run(
        id=run_id,
        command=rc.command,
        command_template=spec.command if rc.command != spec.command else None,
        created_at=now,
        type=spec.type,
        status=QUEUED if queued else RUNNING,
        executor=spec.executor,
        environment_id=env_id,
        image_id=image_id,
        message=spec.message,
        tags=list(spec.tags),
        config=rc.values,
        options=spec.options(),
        env=spec.public_env(),
        secret_env=spec.secret_names(),
        before_snapshot_id=before_snapshot_id,
        started_at=None if queued else now,
        # Until the supervisor takes over, this process answers for the run.
        supervisor={} if queued else launcher,
        workdir=workdir,
        rerun_of=rerun_of,
        sweep_id=sweep_id,
        queue=_queue_fields(spec, point) if queued else {},
        timings={
            "environment_s": round(t1 - t0, 4),
            "before_snapshot_s": round(t2 - t1 if before_s is None else before_s, 4),
        },
    )
    records.make_data(ctx.store, run.id, rc.values)
    return records.save(ctx.store, run) if save else run


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

    on_slurm = [r for r in targets if r.executor == "slurm" and r.slurm.get("job")]
    if on_slurm:
        from datmo.core.controller import slurm

        slurm.stop(ctx, on_slurm)
    staged = [r.id for r in targets if r.status == QUEUED and r not in on_slurm]
    if staged:  # never started: stopped as they are
        stop_queued(ctx, staged)

    asked = [r for r in on_slurm if r.status != QUEUED]
    asked += [r for r in targets if r not in on_slurm and task.request_stop(ctx, r)]
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
    here = run.supervisor.get("host") in (None, this_host())  # a pid means nothing elsewhere
    if here and leftover and alive(leftover.get("pid"), leftover.get("start")):
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


def stop_queued(ctx: ProjectContext, ids: list[str]) -> int:
    """Staged runs recorded STOPPED without ever starting (a sweep stopped)."""
    n = 0
    with ctx.store.lock():
        for run_id in ids:
            run = records.read(ctx.store, run_id)
            if run.status == QUEUED:
                records.update(ctx.store, run_id, status=STOPPED, ended_at=utcnow())
                n += 1
    return n
