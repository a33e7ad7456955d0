"""A run on Slurm, on the compute node: what its job's batch script runs.

`python -m datmo.cli.slurmjob ROOT BATCH TOKEN OFFSET` (controller/slurm.py writes the
script): first it checks that this node sees the project as it was submitted (the
submission's file holds the same token), else it fails at once with one line. Then it
takes the run over (QUEUED -> RUNNING, this host and the job in the record), fills the
run's working copy from its before snapshot, and hands the rest to the supervisor that
every run has (controller/outcome.supervise): the task runs as a local process inside
the job's allocation, the log and the metrics are written as it goes, a heartbeat tells
the login node it is alive, and the after snapshot is taken here when it ends. Slurm's
signals are heard: SIGUSR1 (the time limit is near) ends it FAILED with TIMEOUT,
SIGUSR2 (`datmo stop`) STOPPED, SIGTERM (scancel, preemption) STOPPED saying so.

A requeued job (preempted, or its node failed) starts the same run again: the record
counts the attempts. The node never writes the run index (SQLite's WAL does not work
across hosts on a network filesystem); the login node brings it up to date when it reads.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from datmo.core.controller import outcome, slurm, snapshot, workcopy
from datmo.core.entity.base import utcnow
from datmo.core.entity.run import QUEUED, RUNNING, Run
from datmo.core.executor.slurm import job_id
from datmo.core.storage import runs as records
from datmo.core.storage.project import ProjectContext
from datmo.core.storage.store import Store
from datmo.core.task.process import me
from datmo.errors import DatmoError


class NotSeen(DatmoError):
    """This node does not see the project as it was submitted."""

    exit_code = 2


def open_as_submitted(root: str, batch: str, token: str, offset: int) -> tuple[ProjectContext, str]:
    """The project and the run this array task is for; NotSeen when the node's view of
    the folder is not the one the job was submitted from."""
    where = Path(root)
    store = Store(where)
    try:
        doc = slurm.batch_file(ProjectContext(where, store), batch)
    except (DatmoError, OSError):
        doc = {}
    if doc.get("token") != token:
        raise NotSeen(
            f"node {socket.gethostname()} does not see the datmo project at {root} as it "
            "was submitted: the project must be on a filesystem the compute nodes share "
            "(home or project space), at the same path"
        )
    index = offset + int(os.environ.get("SLURM_ARRAY_TASK_ID") or 0)
    run_ids = doc["runs"]
    if not 0 <= index < len(run_ids):
        raise NotSeen(f"array task {index} has no run in submission {batch}")
    store.index_writes = False  # never SQLite across hosts
    return ProjectContext(where, store), str(run_ids[index])


def take_over(ctx: ProjectContext, run_id: str) -> Run | None:
    """Make the run this job's (RUNNING on this node); None when there is nothing to run
    (it was stopped before it started, or it already ran in this attempt)."""
    store = ctx.store
    restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    with store.lock():
        run = records.read(store, run_id)
        s = run.slurm
        again = restarts > int(s.get("restarts") or 0)  # Slurm requeued the job
        if run.status != QUEUED and not again:
            return None  # stopped before it started, or this attempt ran already
        slurm_fields = {
            **s,
            "job": job_id() or s.get("job"),
            "node": socket.gethostname(),
            "attempts": int(s.get("attempts") or 0) + 1,
            "restarts": restarts,
            "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
        slurm_fields.pop("state", None)
        slurm_fields.pop("reason", None)
        run = run.evolve(
            status=RUNNING,
            started_at=run.started_at if again and run.started_at else utcnow(),
            ended_at=None,
            exit_code=None,
            error=None,
            after_snapshot_id=None,
            supervisor=me(launcher=True),
            slurm=slurm_fields,
            workdir=workcopy.relpath(run.id),
        )
        records.save(store, run)
    return run


def run_job(ctx: ProjectContext, run_id: str) -> int:
    """The job's whole work; the exit code its batch script ends with (the task's)."""
    run = take_over(ctx, run_id)
    if run is None:
        return 0
    stop = records.data_dir(ctx.store, run.id) / records.STOP_FILE
    if stop.exists():  # `datmo stop` came before the job started
        stop.unlink()
        records.update(ctx.store, run.id, status="STOPPED", ended_at=utcnow())
        return 0
    try:
        workcopy.make(ctx, snapshot.get(ctx, run.before_snapshot_id or ""), run.id)
    except DatmoError as e:
        records.update(ctx.store, run.id, status="FAILED", ended_at=utcnow(), error=str(e))
        return 125
    return outcome.supervise(ctx, run.id, slurm.env_of(run), 0, -1)
