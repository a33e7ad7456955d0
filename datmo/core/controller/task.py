"""The task controller: one command run in an environment, through an executor.

The run controller makes a run's record and before snapshot, then hands the task to a
supervisor process here (`hand_over`). The supervisor answers one line once the task
has started ("OK") or could not ("ERR why"); only then does `datmo run` return (-d) or
`follow` the log. In the supervisor process, `execute` starts the task through its
executor and supervises it to the end (datmo.core.task.supervisor); the run controller
then records how it ended and takes the after snapshot.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from datmo.core import executor as executors
from datmo.core.entity.run import RUNNING, Run
from datmo.core.executor import TaskHandle
from datmo.core.storage import runs as records
from datmo.core.storage.fsutil import atomic_write_bytes
from datmo.core.storage.project import ProjectContext
from datmo.core.task import prespawn, process
from datmo.core.task.metrics import OutputCapture, appender
from datmo.core.task.process import alive, effective, start_time
from datmo.core.task.spec import is_secret
from datmo.core.task.supervisor import Ended, stop_signals, supervise
from datmo.core.util.probe import Signature, is_racy, signature
from datmo.errors import DatmoError

Progress = Callable[[str], None]
STATS = "stats.json"  # the metrics file a task may leave in its tree
REFRESH_S = 2.0  # how often follow() asks refresh (one squeue call for a run on Slurm)


def current(ctx: ProjectContext, ref: str) -> Run:
    """A run's record as it stands now (the run controller's get, without the import)."""
    return effective(records.read(ctx.store, ref))


def workdir(ctx: ProjectContext, run: Run) -> Path:
    """Where the task runs: the project, or a rerun's scratch copy."""
    return ctx.root / run.workdir if run.workdir else ctx.root


# -- the side of `datmo run` ---------------------------------------------------------


def start_supervisor(ctx: ProjectContext, executor: str) -> subprocess.Popen[bytes]:
    """A supervisor waiting for its orders: the one the console script started early
    (it has loaded what it needs while this process prepared the run), or a new one."""
    return prespawn.take() or prespawn.spawn([str(ctx.root), executor], cwd=str(ctx.root))


def dismiss(proc: subprocess.Popen[bytes]) -> None:
    """Send a waiting supervisor away: with no orders it exits."""
    with contextlib.suppress(OSError):
        proc.stdin.close()  # type: ignore[union-attr]


def hand_over(
    ctx: ProjectContext,
    run: Run,
    proc: subprocess.Popen[bytes],
    env: dict[str, str],
    detach: bool,
) -> Run:
    """Give the supervisor its orders (env: the task's variables, secrets included, which
    travel only this way); the run's record once the task is running. A detached run's
    supervisor goes on alone; a foreground one stops the task when this process dies."""
    try:
        send_orders(ctx, run, proc, env, detach)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode(errors="replace").strip()
    except KeyboardInterrupt:
        proc.terminate()  # the supervisor records a STOPPED run if the task had started
        raise
    return answered(ctx, run, proc, line)


def send_orders(
    ctx: ProjectContext, run: Run, proc: subprocess.Popen[bytes], env: dict[str, str], detach: bool
) -> None:
    """The first half of a hand-over: the supervisor answers one line on its stdout."""
    fg = 0 if detach else os.getpid()
    assert proc.stdin is not None
    payload = {"root": str(ctx.root), "run_id": run.id, "foreground": fg, "env": env}
    proc.stdin.write(json.dumps(payload).encode())
    proc.stdin.close()


def answered(ctx: ProjectContext, run: Run, proc: subprocess.Popen[bytes], line: str) -> Run:
    """The second half: the run's record once the supervisor said OK; else why not."""
    if line == "OK":
        return current(ctx, run.id)
    if proc.poll() is None:
        time.sleep(0.05)
    if not line:
        # The supervisor died (killed?) before answering: it may have made a container.
        if run.executor == "docker":
            with contextlib.suppress(Exception):
                from datmo.core.executor.docker import remove_run_containers

                remove_run_containers(run.id, None)
        why = "the run's supervisor exited before starting the task; try again"
        not_started(ctx, run, why)
        raise DatmoError(why)
    raise DatmoError(line.removeprefix("ERR ").strip())


def follow(
    ctx: ProjectContext,
    run: Run,
    out: BinaryIO,
    on_stop: Progress | None = None,
    stop: bool = True,
    refresh: Callable[[Run], Run] | None = None,
    stopper: Callable[[Run], object] | None = None,
) -> Run:
    """Print the run's output as it comes; Ctrl-C asks for a stop and waits for the
    record (stop=False, as `datmo logs -f`: Ctrl-C only stops following, as tail -f).
    refresh: every few seconds, what the record cannot say yet (a run on Slurm: what
    Slurm knows); stopper: how to stop it (default: ask its supervisor)."""
    path = records.log_path(ctx.store, run.id)
    stop_sent = False
    refreshed = time.monotonic()
    with open(path, "rb") as log:
        while True:
            try:
                chunk = log.read(65536)
                if chunk:
                    out.write(chunk)
                    out.flush()
                    continue
                run = current(ctx, run.id)
                if refresh and time.monotonic() - refreshed > REFRESH_S:
                    refreshed = time.monotonic()
                    run = refresh(run)
                if run.finished:
                    rest = log.read()
                    if rest:
                        out.write(rest)
                        out.flush()
                    return run
                time.sleep(0.02)  # a record read costs ~0.1 ms; the wait is what users feel
            except KeyboardInterrupt:
                if not stop:
                    raise
                if not stop_sent:
                    stop_sent = True
                    if stopper:
                        stopper(run)
                    else:
                        request_stop(ctx, run)
                    if on_stop:
                        on_stop(f"stopping run {run.id[:8]} (its after snapshot is being taken)...")


def request_stop(ctx: ProjectContext, run: Run) -> bool:
    """Ask a run's supervisor to stop the task; False when no supervisor answers."""
    sup = run.supervisor
    if not alive(sup.get("pid"), sup.get("start")):
        return False
    path = records.data_dir(ctx.store, run.id) / records.STOP_FILE
    with contextlib.suppress(FileNotFoundError):
        path.touch()
    if sup.get("launcher"):
        return True  # `datmo run` is still handing over: the supervisor sees the file at once
    with contextlib.suppress(ProcessLookupError):
        os.kill(sup["pid"], signal.SIGTERM)
    return True


# -- the side of the supervisor ------------------------------------------------------


@dataclass
class Execution:
    """A task run to its end: the record with what its executor reported, the handle
    (its leftovers are not yet removed), how it ended, and how long it took."""

    run: Run
    handle: TaskHandle
    ended: Ended
    seconds: float  # from asking the executor to start it to its end
    stats_written: bool  # the task wrote stats.json (its stat changed while it ran)
    stop_why: str = ""  # what stopped it: "stop", or on Slurm "timeout" or "cancel"


def execute(
    ctx: ProjectContext,
    run: Run,
    env: dict[str, str],
    fg_pid: int,
    fd: int,
    on_poll: Callable[[], None] | None = None,
) -> Execution | None:
    """Start the task and supervise it to its end; None when it could not start (the run
    is discarded and `datmo run` told why). fd: where `datmo run` waits for its answer;
    on_poll: called a few times a second while the task runs, and once after."""
    stop = stop_signals(slurm=run.executor == "slurm")
    store = ctx.store
    me = process.me(foreground=fg_pid or None)
    fg_start = start_time(fg_pid) if fg_pid else None
    with store.lock():  # take over only a run still waiting for us (not requeued, not LOST)
        now = records.read(store, run.id)
        if now.status != RUNNING or not now.supervisor.get("launcher"):
            handshake(fd, f"ERR run {run.id[:8]} is {now.status} and was taken over meanwhile")
            return None
        run = records.save(store, now.evolve(supervisor=me))
    data = records.data_dir(store, run.id)
    st = os.stat(ctx.root)
    task = executors.TaskContext(
        run=run,
        workdir=workdir(ctx, run),
        env=env,
        metrics_file=data / records.METRICS,
        config_file=data / records.CONFIG,
        home=store.path("home"),
        owner=(st.st_uid, st.st_gid),
        user_name=_user_name(st.st_uid),
        extra={"labels": {"datmo.project": ctx.info.id}},
        cache=store.path("cache"),
    )
    # A stats.json counts for this run only if its task writes it: decided by its stat,
    # since a deterministic task writes the same content again.
    stats = os.fspath(task.workdir / STATS)
    stats_before = _settled(stats)
    started = time.perf_counter()
    try:
        handle = executors.get(run.executor).start(task)

    except Exception as e:
        not_started(ctx, run, str(e))  # before answering, so `datmo run` never sees it
        handshake(fd, f"ERR {e}")
        return None
    info = {k: v for k, v in handle.info.items() if k in Run.__dataclass_fields__}
    run = records.save(store, run.evolve(**info))
    relay = None
    if run.options.get("interactive"):
        from datmo.core.task.ttyrelay import RelayServer

        relay = RelayServer(data, handle, store.owner)
    handshake(fd, "OK")
    secrets = [v for k, v in env.items() if is_secret(k)]
    if run.executor in ("local", "slurm"):  # a local task also inherits this environment
        secrets += [v for k, v in os.environ.items() if is_secret(k)]
    requests = SnapshotRequests(ctx, run)
    stop_file = data / records.STOP_FILE

    def stop_requested() -> bool:
        lost_fg = bool(fg_pid) and not alive(fg_pid, fg_start)
        return stop.is_set() or lost_fg or stop_file.exists()

    late: dict[str, Any] = {}

    def record_late(wait: bool) -> None:
        """What the executor found out since the start, into the record (retried at the
        next poll when the lock is busy; waited for once the task has ended)."""
        late.update(handle.late_info(wait=wait))
        if late:
            with contextlib.suppress(DatmoError):
                records.update(store, run.id, lock_timeout=0.2, **late)
                late.clear()

    def poll() -> None:
        requests.poll()
        record_late(wait=False)
        if on_poll:
            on_poll()

    capture = None
    if run.options.get("capture", True):
        capture = OutputCapture(appender(data / records.METRICS))
    ended = supervise(
        handle,
        data / records.LOG,
        secrets,
        capture=capture,
        stop_requested=stop_requested,
        poll=poll,
        relay=relay,
    )
    seconds = time.perf_counter() - started
    late.update(handle.late_info(wait=True))
    if late:
        run = records.update(store, run.id, **late)
    why = stop.why or ("stop" if ended.stopped else "")
    return Execution(run, handle, ended, seconds, signature(stats) != stats_before, why)


class SnapshotRequests:
    """Serves `datmo.snapshot.create()` called inside a task: the task cannot reach the
    store, so it appends a request to its metrics file and waits for a reply file."""

    def __init__(self, ctx: ProjectContext, run: Run) -> None:
        self.ctx, self.run = ctx, run
        self.data = records.data_dir(ctx.store, run.id)
        self.pos = 0

    def poll(self) -> None:
        try:
            with open(self.data / records.METRICS, "rb") as f:
                f.seek(self.pos)
                chunk = f.read()
        except FileNotFoundError:
            return
        cut = chunk.rfind(b"\n") + 1
        self.pos += cut
        for line in chunk[:cut].splitlines():
            if b'"snapshot"' in line:
                with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                    doc = json.loads(line)
                    if doc.get("kind") == "snapshot":
                        self._serve(str(doc["request"]), doc["snapshot"])

    def _serve(self, request: str, body: dict[str, Any]) -> None:
        from datmo.core.controller import snapshot

        if not request.isalnum():
            return
        try:
            result = snapshot.create(
                self.ctx,
                str(body.get("message") or f"from run {self.run.id[:8]}"),
                label=body.get("label"),
                config=body.get("config") or {},
                metrics=body.get("stats") or {},
                tree=workdir(self.ctx, self.run),
            )
            reply: dict[str, Any] = {"id": result.snapshot.id, "created": result.created}
        except Exception as e:
            reply = {"error": str(e)}
        path = self.data / records.REPLIES / f"{request}.json"
        atomic_write_bytes(path, json.dumps(reply).encode(), self.ctx.store.owner)


def _settled(path: str) -> Signature | None:
    """The file's signature, once its times are old enough that a write from now on is
    sure to change them (a rerun's copy was written a moment ago; 2 s at worst, for a
    filesystem that keeps whole seconds)."""
    sig = signature(path)
    while sig is not None and (is_racy(sig[2], time.time_ns()) or is_racy(sig[3], time.time_ns())):
        time.sleep(0.005)
    return sig


def not_started(ctx: ProjectContext, run: Run, why: str) -> None:
    """A run whose task could not start: made as if never made, but a queued one (staged
    by someone who is not waiting for the answer) ends FAILED, saying why."""
    if not run.queue:
        records.discard(ctx.store, run.id)
        return
    from datmo.core.entity.base import utcnow

    records.update(ctx.store, run.id, status="FAILED", ended_at=utcnow(), error=why)
    if run.workdir:
        from datmo.core.controller import workcopy

        workcopy.remove(ctx, run.workdir)


def handshake(fd: int, text: str) -> None:
    """The supervisor's one-line answer to `datmo run`: OK, or ERR and why (fd -1: no
    one waits for it, as in a Slurm job)."""
    if fd < 0:
        return
    try:
        os.write(fd, (text.replace("\n", " ") + "\n").encode())
        os.close(fd)
    except OSError:
        pass  # the foreground went away; the record tells the story


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "datmo"
