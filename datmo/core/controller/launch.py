"""Starting a run: validate, snapshot the state before, hand the task to a supervisor.

Everything that can be refused is refused before any record exists. The
supervisor answers one line once the task has started ("OK") or could not
("ERR why"); only then does `datmo run` return (-d) or follow the log.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable
from typing import BinaryIO

from datmo.core.controller import run as runs
from datmo.core.entity.base import new_id, utcnow
from datmo.core.entity.run import Run
from datmo.core.storage.fsutil import chown, makedirs
from datmo.core.storage.project import ProjectContext
from datmo.core.task import prespawn
from datmo.core.task.process import start_time
from datmo.core.task.spec import RunSpec
from datmo.errors import DatmoError

Progress = Callable[[str], None]


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
    # The supervisor starts first and loads what it needs (Python, the Docker SDK, a
    # client) while this process checks the image and takes the before snapshot.
    proc = prespawn.take() or prespawn.spawn([str(ctx.root), spec.executor], cwd=str(ctx.root))
    try:
        run = _prepare(ctx, spec, progress, before_snapshot_id, workdir, rerun_of, image_id)
    except BaseException:
        with contextlib.suppress(OSError):
            proc.stdin.close()  # type: ignore[union-attr]  # an empty answer: it exits
        raise
    return _spawn(ctx, run, spec, proc)


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
    data = runs.data_dir(ctx, run.id, create=True)
    makedirs(data / "replies", ctx.store.owner)
    for name in ("output.log", "metrics.jsonl", "supervisor.log"):
        (data / name).touch()
        chown(data / name, ctx.store.owner)
    runs.save(ctx, run)
    return run


def _spawn(ctx: ProjectContext, run: Run, spec: RunSpec, proc: subprocess.Popen[bytes]) -> Run:
    fg = 0 if spec.detach else os.getpid()
    assert proc.stdin is not None and proc.stdout is not None
    try:
        payload = {"root": str(ctx.root), "run_id": run.id, "foreground": fg, "env": spec.env}
        proc.stdin.write(json.dumps(payload).encode())
        proc.stdin.close()
        line = proc.stdout.readline().decode(errors="replace").strip()
    except KeyboardInterrupt:
        proc.terminate()  # the supervisor records a STOPPED run if the task had started
        raise
    if line == "OK":
        return runs.get(ctx, run.id)
    if proc.poll() is None:
        time.sleep(0.05)
    if not line:
        # The supervisor died (killed?) before answering: it may have made a container.
        if spec.executor == "docker":
            with contextlib.suppress(Exception):
                from datmo.core.executor.docker import remove_run_containers

                remove_run_containers(run.id, None)
        runs.discard(ctx, run.id)
        raise DatmoError("the run's supervisor exited before starting the task; try again")
    raise DatmoError(line.removeprefix("ERR ").strip())


def follow(ctx: ProjectContext, run: Run, out: BinaryIO, on_stop: Progress | None = None) -> Run:
    """Print the run's output as it comes; Ctrl-C asks for a stop and waits for the record."""
    path = runs.log_path(ctx, run.id)
    stop_sent = False
    with open(path, "rb") as log:
        while True:
            try:
                chunk = log.read(65536)
                if chunk:
                    out.write(chunk)
                    out.flush()
                    continue
                run = runs.get(ctx, run.id)
                if run.finished:
                    rest = log.read()
                    if rest:
                        out.write(rest)
                        out.flush()
                    return run
                time.sleep(0.02)  # a record read costs ~0.1 ms; the wait is what users feel
            except KeyboardInterrupt:
                if not stop_sent:
                    stop_sent = True
                    runs.request_stop(ctx, run)
                    if on_stop:
                        on_stop(f"stopping run {run.id[:8]} (its after snapshot is being taken)...")
