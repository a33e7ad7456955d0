"""Runs on Slurm, on the side where they are submitted (the login node).

A run on Slurm is a staged run (QUEUED, its before snapshot taken now, made without
touching your tree) whose worker is Slurm: its job runs datmo's supervisor on a compute
node (controller/slurmnode.py), which turns it RUNNING, runs the task in the run's
working copy, writes the log, the metrics and a heartbeat into the record as it goes,
and takes the after snapshot there. Every submission is one job array, however many
runs (a single run is an array of one): `--array=0-(N-1)%K` runs K at a time, and an
array larger than the site's MaxArraySize goes in chunks, each starting after the last
has ended (`--dependency=afterany`), so no more than K run at once overall.

The job checks first thing that it sees the project as submitted: the batch file under
`.datmo/slurm/` holds a token that its command line carries too.

What Slurm knows goes into the records only where the supervisor cannot say it: a run
still QUEUED whose job ended (it never started, or died first), or a run whose
heartbeat stopped (killed for time or memory, a node that failed). That takes one
`squeue` call for all such runs, and none while every run on Slurm is RUNNING and heard
from (sync).
"""

from __future__ import annotations

import os
import secrets
import shlex
import sys
from typing import TYPE_CHECKING, Any

from datmo.core.entity.base import new_id, utcnow
from datmo.core.entity.run import FAILED, LOST, QUEUED, RUNNING, STOPPED, Run
from datmo.core.executor import slurm as client
from datmo.core.storage import runs as records
from datmo.core.storage.fsutil import deferred
from datmo.core.storage.project import ProjectContext
from datmo.core.task.spec import RunSpec
from datmo.errors import DatmoError, UsageError

if TYPE_CHECKING:
    from datmo.core.controller.task import Progress

FOLDER = "slurm"  # in .datmo: one file per submission (its runs and token), job output
SETTINGS = ("partition", "time", "memory", "cpus", "account", "qos", "args", "python")


def job_options(
    ctx: ProjectContext, spec: RunSpec, given: dict[str, Any] | None = None
) -> client.JobOptions:
    """What the runs ask Slurm for: the command line's options over the project's
    settings (slurm.partition, ...)."""
    from datmo.core.controller import settings

    given = {k: v for k, v in (given or {}).items() if v not in (None, (), "")}

    def pick(name: str) -> Any:
        return given.get(name, settings.get(ctx, f"slurm.{name}"))

    cpus = spec.cpus if spec.cpus is not None else pick("cpus")
    if cpus is not None and (float(cpus) != int(float(cpus)) or float(cpus) < 1):
        raise UsageError(f"--cpus {cpus}: Slurm gives whole CPUs; give a whole number such as 2")
    memory = spec.memory
    if memory is None and pick("memory"):
        from datmo.core.task.spec import parse_memory

        memory = parse_memory(str(pick("memory")))
    extra = list(shlex.split(str(pick("args") or ""))) + list(given.get("extra", ()))
    return client.JobOptions(
        partition=pick("partition") or None,
        time=str(pick("time")) if pick("time") else None,
        memory_mb=-(-memory // (1 << 20)) if memory else None,
        cpus=int(float(cpus)) if cpus is not None else None,
        gpus=spec.num_gpus,
        account=pick("account") or None,
        qos=pick("qos") or None,
        extra=tuple(extra),
    )


def refuse_local_options(spec: RunSpec) -> None:
    """Options that mean nothing in a Slurm job: one line, before anything is made."""
    if spec.gpus:
        raise UsageError("--gpus picks devices on this machine; on Slurm ask with --num-gpus N")
    if spec.ports:
        raise UsageError("-p publishes a port on this machine; a Slurm job runs elsewhere")
    if spec.environment:
        raise UsageError(
            "--environment picks a Docker environment; a Slurm job runs in the Python the "
            "compute node has (load it in slurm.args, or a module in your command)"
        )


def submit(
    ctx: ProjectContext,
    staged: list[Run],
    options: client.JobOptions,
    throttle: int | None,
    progress: Progress | None = None,
) -> list[str]:
    """Submit staged runs as one job array (in chunks past MaxArraySize); the job ids."""
    if not staged:
        return []
    client.require()
    store = ctx.store
    batch, token = new_id()[:16], secrets.token_hex(16)
    store.write_json(f"{FOLDER}/{batch}.json", {"token": token, "runs": [r.id for r in staged]})
    size = client.max_array_size() if len(staged) > 1 else 1
    jobs: list[str] = []
    python = _python(ctx)
    for chunk, first in enumerate(range(0, len(staged), size)):
        part = staged[first : first + size]
        last = len(part) - 1
        script = (
            "#!/bin/sh\n"
            f"# datmo: {len(part)} run(s) of {ctx.root}\n"
            f"exec {shlex.quote(python)} -m datmo.cli.slurmjob {shlex.quote(str(ctx.root))} "
            f"{batch} {token} {first}\n"
        )
        sub = client.Submission(
            script=script,
            name=f"datmo-{part[0].id[:8]}" if len(staged) == 1 else f"datmo-{batch[:8]}",
            output=str(store.path(FOLDER, batch, f"{chunk}-%a.out")),
            workdir=str(ctx.root),
            array=f"0-{last}" + (f"%{throttle}" if throttle else ""),
            after=jobs[-1] if jobs else None,
            options=options,
        )
        store.path(FOLDER, batch).mkdir(parents=True, exist_ok=True)
        job = client.submit(sub)
        jobs.append(job)
        with store.lock(), deferred():  # one flush for the chunk's records
            when, described = utcnow(), _described(options)
            submitted = []
            for i, run in enumerate(part):
                now = records.read(store, run.id)  # its job may have started already
                slurm = {
                    **now.slurm,
                    "job": f"{job}_{i}",
                    "batch": batch,
                    "output": str(store.path(FOLDER, batch, f"{chunk}-{i}.out")),
                    "options": described,
                    "submitted_at": when,
                }
                submitted.append(now.evolve(slurm=slurm))
            records.save_many(store, submitted)
    if progress and len(staged) > 1:
        shown = ", ".join(jobs)
        progress(f"submitted {len(staged)} runs to Slurm as job array {shown}")
    return jobs


def checked(
    ctx: ProjectContext, spec: RunSpec, given: dict[str, Any], throttle: int | None
) -> dict[str, Any]:
    """A sweep's Slurm request, checked with Slurm, as its record keeps it."""
    refuse_local_options(spec)
    options = job_options(ctx, spec, given)
    client.check(options)
    return {"options": _described(options), "throttle": throttle}


def options_of(doc: dict[str, Any]) -> client.JobOptions:
    kept = dict(doc)
    kept["extra"] = tuple(kept.get("extra") or ())
    known = client.JobOptions.__dataclass_fields__
    return client.JobOptions(**{k: v for k, v in kept.items() if k in known})


def submit_sweep(
    ctx: ProjectContext, sweep: Any, staged: list[Run], progress: Progress | None
) -> None:
    """A sweep's newly staged runs, as one job array K at a time (--parallel K). Runs
    Slurm refused are recorded STOPPED saying why, so `sweep resume` stages them again."""
    doc = sweep.options.get("slurm") or {}
    try:
        submit(ctx, staged, options_of(doc.get("options") or {}), doc.get("throttle"), progress)
    except DatmoError as e:
        with ctx.store.lock():
            for run in staged:
                now = records.read(ctx.store, run.id)
                if now.status == QUEUED and not now.slurm.get("job"):
                    why = f"not submitted to Slurm: {e}"
                    records.save(
                        ctx.store, now.evolve(status=STOPPED, ended_at=utcnow(), error=why)
                    )
        raise


def _python(ctx: ProjectContext) -> str:
    from datmo.core.controller import settings

    return str(settings.get(ctx, "slurm.python") or sys.executable)


def _described(options: client.JobOptions) -> dict[str, Any]:
    doc = {k: v for k, v in options.__dict__.items() if v not in (None, (), 0)}
    doc["extra"] = list(options.extra)
    return doc


# -- what Slurm knows, into the records -----------------------------------------------


def needs_sync(run: Run) -> bool:
    """A run on Slurm whose state Slurm may know better than its record."""
    waiting = run.status == QUEUED or (run.status == LOST and not run.ended_at)
    return run.executor == "slurm" and waiting and bool(run.slurm.get("job"))


def sync(ctx: ProjectContext, found: list[Run]) -> list[Run]:
    """The runs as Slurm and their records together say they stand: a QUEUED run gets
    Slurm's state and reason (PENDING (Resources)); a run Slurm saw end that its
    supervisor could not record is recorded FAILED or STOPPED with Slurm's word for why
    (TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, CANCELLED); a run Slurm forgot whose supervisor
    is silent is LOST. One squeue call at most, none when no run needs one."""
    asked = [r for r in found if needs_sync(r)]
    if not asked:
        return found
    try:
        jobs = [str(r.slurm["job"]) for r in asked]
        known = client.states(jobs)
        forgotten = [j for j in jobs if j not in known]
        if forgotten:  # past squeue's memory: sacct knows, where the site keeps accounts
            known.update(client.accounted(forgotten))
    except DatmoError:
        return found  # no answer now: the records as they are
    changed: dict[str, Run] = {}
    for run in asked:
        state = known.get(str(run.slurm["job"]))
        now = _settle(ctx, run, state)
        if now is not run:
            changed[run.id] = now
    return [changed.get(r.id, r) for r in found]


def _settle(ctx: ProjectContext, run: Run, state: client.JobState | None) -> Run:
    if state is not None and not state.final:
        shown = {**run.slurm, "state": state.state, "reason": state.reason, "node": state.node}
        if run.status == LOST and state.state in ("RUNNING", "COMPLETING"):
            return run.evolve(status=RUNNING, error=None, slurm=shown)  # its heartbeat lags
        return run.evolve(slurm=shown)
    if state is None and run.status == QUEUED and _young(run):
        return run  # just submitted: Slurm may not list it yet
    from datmo.core.task.process import effective

    store = ctx.store
    with store.lock():
        now = effective(records.read(store, run.id))
        if now.status not in (QUEUED, LOST):
            return now  # its supervisor recorded it meanwhile
        if state is None:
            why = f"Slurm no longer knows job {run.slurm['job']} and its supervisor is silent"
            status = LOST
        else:
            why = f"{state.describe()} in Slurm (job {run.slurm['job']}; see {run.slurm['output']})"
            status = STOPPED if state.state == "CANCELLED" else FAILED
        slurm = {**now.slurm, "state": state.state if state else "UNKNOWN"}
        if state:
            slurm["reason"] = state.reason
        final = now.evolve(status=status, ended_at=utcnow(), error=why, slurm=slurm)
        records.save(store, final)
    if final.workdir:
        from datmo.core.controller import workcopy

        workcopy.remove(ctx, final.workdir)
    return final


def _young(run: Run) -> bool:
    from datetime import datetime, timezone

    at = run.slurm.get("submitted_at")
    if not isinstance(at, str):
        return False
    then = datetime.fromisoformat(at.replace("Z", "+00:00"))
    return (datetime.now(timezone.utc) - then).total_seconds() < 30


# -- stopping -------------------------------------------------------------------------


def stop(ctx: ProjectContext, found: list[Run]) -> None:
    """`datmo stop` of runs on Slurm: jobs not started are cancelled (their runs
    STOPPED); a running one's supervisor is told (SIGUSR2 to its batch script) to stop
    the task and take its after snapshot, as a local stop does. One scancel for each."""
    for run in found:  # seen by a supervisor that starts meanwhile
        (records.data_dir(ctx.store, run.id) / records.STOP_FILE).touch()
    waiting = [r for r in found if r.status == QUEUED and r.slurm.get("job")]
    running = [r for r in found if r.status != QUEUED and r.slurm.get("job")]
    if waiting:
        client.cancel([str(r.slurm["job"]) for r in waiting])
        with ctx.store.lock():
            for run in waiting:
                now = records.read(ctx.store, run.id)
                if now.status == QUEUED:
                    records.save(ctx.store, now.evolve(status=STOPPED, ended_at=utcnow()))
    if running:
        client.cancel([str(r.slurm["job"]) for r in running], signal="USR2")


def batch_file(ctx: ProjectContext, batch: str) -> dict[str, Any]:
    """A submission's runs and token, as the job reads them."""
    doc = ctx.store.read_json(f"{FOLDER}/{batch}.json")
    if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list):
        raise DatmoError(f"the Slurm submission file {batch}.json is damaged")
    return doc


def env_of(run: Run) -> dict[str, str]:
    """The task's variables: the recorded ones, and secrets from the job's environment
    (sbatch passes the submitter's; their values are never stored by datmo)."""
    env = dict(run.env)
    for name in run.secret_env:
        if name in os.environ:
            env[name] = os.environ[name]
    return env
