"""The run supervisor: a small background datmo process that owns one task.

`datmo run` starts it in its own session, so it outlives the terminal. It
starts the task (container or process), writes its output to the run's log,
records the exit code, takes the after snapshot and removes the container.
A foreground run whose `datmo run` dies is stopped and still recorded; a
detached run goes on. Invoked as `python -m datmo.core.task.supervisor ROOT EXECUTOR`, or
`... --early [EXECUTOR]` by the console script before it knows the project
(datmo.core.task.prespawn); its orders (the run, the project root and the task's
environment, secrets included) come as JSON on stdin, never on disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from datmo.core import executor as executors
from datmo.core.controller import run as runs
from datmo.core.entity.base import utcnow
from datmo.core.entity.run import FAILED, STOPPED, SUCCESS, Run
from datmo.core.storage.fsutil import atomic_write_bytes
from datmo.core.storage.project import ProjectContext
from datmo.core.storage.store import Store
from datmo.core.task.metrics import OutputCapture, collect
from datmo.core.task.process import alive, start_time
from datmo.core.task.spec import is_secret

POLL_S = 0.2


class Redactor:
    """Writes output to the log with secret values replaced, a line at a time."""

    def __init__(self, log: Any, secrets: list[str], capture: OutputCapture | None) -> None:
        self.log, self.capture = log, capture
        self.failed: str | None = None  # the log stopped (disk full); output is still drained
        self.secrets = sorted({s.encode() for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self.partial = b""

    def feed(self, chunk: bytes) -> None:
        data = self.partial + chunk
        cut = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
        if len(data) - cut > 65536:
            cut = len(data)  # a line that never ends still reaches the log
        self.partial = data[cut:]
        self._write(data[:cut])

    def close(self) -> None:
        self._write(self.partial)
        self.partial = b""

    def _write(self, data: bytes) -> None:
        if not data:
            return
        for secret in self.secrets:
            data = data.replace(secret, b"***")
        if self.capture:
            self.capture.feed(data)
        if self.failed:
            return
        try:
            self.log.write(data)
            self.log.flush()
        except OSError as e:
            self.failed = f"log truncated: the disk is full or failed ({e.strerror})"
            self._make_room()

    def _make_room(self) -> None:
        """A full disk: give back the log's last MiB so the run's record can still be written."""
        with contextlib.suppress(OSError):
            size = os.fstat(self.log.fileno()).st_size
            os.ftruncate(self.log.fileno(), max(0, size - (1 << 20)))
            os.lseek(self.log.fileno(), 0, os.SEEK_END)
            os.write(
                self.log.fileno(),
                b"\n[datmo: the disk is full; the rest of the output was dropped]\n",
            )


class SnapshotRequests:
    """Serves `datmo.snapshot.create()` called inside a task: the task cannot reach the
    store, so it appends a request to its metrics file and waits for a reply file."""

    def __init__(self, ctx: ProjectContext, run: Run) -> None:
        self.ctx, self.run = ctx, run
        self.data = runs.data_dir(ctx, run.id)
        self.pos = 0

    def poll(self) -> None:
        try:
            with open(self.data / "metrics.jsonl", "rb") as f:
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
                tree=runs.workdir(self.ctx, self.run),
            )
            reply: dict[str, Any] = {"id": result.snapshot.id, "created": result.created}
        except Exception as e:
            reply = {"error": str(e)}
        path = self.data / "replies" / f"{request}.json"
        atomic_write_bytes(path, json.dumps(reply).encode(), self.ctx.store.owner)


def _handshake(fd: int, text: str) -> None:
    try:
        os.write(fd, (text.replace("\n", " ") + "\n").encode())
        os.close(fd)
    except OSError:
        pass  # the foreground went away; the record tells the story


def supervise(ctx: ProjectContext, run: Run, env: dict[str, str], fg_pid: int, fd: int) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    me = {"pid": os.getpid(), "start": start_time(os.getpid()), "foreground": fg_pid or None}
    fg_start = start_time(fg_pid) if fg_pid else None
    run = runs.save(ctx, run.evolve(supervisor=me))
    data = runs.data_dir(ctx, run.id)
    st = os.stat(ctx.root)
    task = executors.TaskContext(
        run=run,
        workdir=runs.workdir(ctx, run),
        env=env,
        metrics_file=data / "metrics.jsonl",
        home=ctx.store.path("home"),
        owner=(st.st_uid, st.st_gid),
        user_name=_user_name(st.st_uid),
        extra={"labels": {"datmo.project": ctx.info.id}},
    )
    started = time.perf_counter()
    try:
        handle = executors.get(run.executor).start(task)
    except Exception as e:
        runs.discard(ctx, run.id)  # before answering, so `datmo run` never sees it
        _handshake(fd, f"ERR {e}")
        return 125
    run = runs.save(
        ctx, run.evolve(**{k: v for k, v in handle.info.items() if k in Run.__dataclass_fields__})
    )
    relay = None
    if run.options.get("interactive"):
        from datmo.core.task.ttyrelay import RelayServer

        relay = RelayServer(data, handle, ctx.store.owner)
    _handshake(fd, "OK")
    capture = OutputCapture() if run.options.get("capture", True) else None
    secrets = [v for k, v in env.items() if is_secret(k)]
    if run.executor == "local":  # a local task also inherits this environment
        secrets += [v for k, v in os.environ.items() if is_secret(k)]
    code_box: list[int] = []
    with open(runs.log_path(ctx, run.id), "ab") as log:
        out = Redactor(log, secrets, capture)

        def pump_output() -> None:
            for chunk in handle.output():
                out.feed(chunk)
                if relay:
                    relay.send(chunk)

        pump = threading.Thread(target=pump_output, daemon=True)
        waiter = threading.Thread(target=lambda: code_box.append(handle.wait()), daemon=True)
        pump.start()
        waiter.start()
        stopped = False
        requests = SnapshotRequests(ctx, run)
        stop_file = data / runs.STOP_FILE
        while waiter.is_alive():
            requests.poll()
            lost_fg = fg_pid and not alive(fg_pid, fg_start)
            if not stopped and (stop.is_set() or lost_fg or stop_file.exists()):
                stopped = True
                threading.Thread(target=handle.stop, daemon=True).start()
            waiter.join(POLL_S)
        pump.join(10)
        out.close()
        requests.poll()
        if relay:
            relay.close()
    if capture:
        capture.close()
    code = code_box[0] if code_box else -1
    ended = time.perf_counter()
    changes = _outcome(ctx, run, code, stopped, capture)
    if out.failed:
        changes["error"] = "; ".join(filter(None, [changes.get("error"), out.failed]))
    snapshot_s = time.perf_counter() - ended
    try:  # the record is final only once nothing of the run is left behind
        handle.cleanup()
        if run.rerun_of and run.workdir:
            import shutil

            shutil.rmtree(ctx.root / run.workdir, ignore_errors=True)
    finally:
        # The task's part, from creating its container (or process) to removing it.
        task_s = ended - started + (time.perf_counter() - ended - snapshot_s)
        timings = {
            **run.timings,
            "task_s": round(task_s, 4),
            "after_snapshot_s": round(snapshot_s, 4),
        }
        runs.save(ctx, run.evolve(**changes, timings=timings))
    return code


def _outcome(
    ctx: ProjectContext, run: Run, code: int, stopped: bool, capture: OutputCapture | None
) -> dict[str, Any]:
    """What the final record says: status, code, metrics, the after snapshot."""
    from datmo.core.controller import snapshot

    data = runs.data_dir(ctx, run.id)
    reported = collect(data / "metrics.jsonl", capture.found if capture else [])
    if reported.series:
        atomic_write_bytes(
            data / "series.json", json.dumps(reported.series).encode(), ctx.store.owner
        )
    status = STOPPED if stopped else SUCCESS if code == 0 else FAILED
    config = {**run.config, **reported.config}
    ended = utcnow()
    changes: dict[str, Any] = {
        "status": status,
        "exit_code": code,
        "ended_at": ended,
        "config": config,
        "metrics": reported.metrics,
        "duration_s": _duration(run.started_at, ended),
    }
    try:
        after = snapshot.create(
            ctx,
            f"after run {run.id[:8]}: {run.command}"[:200],
            config=config,
            metrics=reported.metrics,
            hidden=True,
            run_id=run.id,
            tree=runs.workdir(ctx, run),
        )
        # The snapshot adds what the task left in config.json and stats.json.
        changes.update(
            after_snapshot_id=after.snapshot.id,
            config=after.snapshot.config,
            metrics=after.snapshot.metrics,
        )
    except Exception as e:  # the task's outcome is still recorded, with why the snapshot failed
        changes["error"] = f"after snapshot failed: {e}"
    return changes


def _duration(start: str | None, end: str) -> float | None:
    from datetime import datetime

    if not start:
        return None
    parse = datetime.fromisoformat
    return round(
        (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds(), 3
    )


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "datmo"


def _warm_up(executor: str) -> None:
    """Load the engine's client while `datmo run` is still preparing the run."""
    if executor != "docker":
        return
    try:
        from datmo.core.executor import docker  # noqa: F401
        from datmo.core.executor.engine import client

        client()
    except Exception:
        pass  # starting the task reports it properly


def _guess_executor(hint: str) -> str:
    """For an early start (datmo.core.task.prespawn): what the run will most likely use."""
    if hint:
        return hint
    try:
        from datmo.core.storage.project import find_root

        root = find_root()
        return ProjectContext(root, Store(root)).info.default_executor
    except Exception:
        return ""  # not a project: `datmo run` will say so, and we get no orders


def main(argv: list[str]) -> int:
    if argv[:1] == ["--early"]:
        _warm_up(_guess_executor(argv[1] if len(argv) > 1 else ""))
    else:
        _warm_up(argv[1])
    payload = json.loads(sys.stdin.read() or "{}")
    if not payload:
        return 0  # `datmo run` stopped before the run was made: nothing to do
    root = Path(payload.get("root") or argv[0])
    run_id, fg = str(payload["run_id"]), int(payload.get("foreground") or 0)
    fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    ctx = ProjectContext(root, Store(root))
    errlog = runs.data_dir(ctx, run_id) / "supervisor.log"
    os.dup2(os.open(errlog, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), 2)
    run = runs.get(ctx, run_id)
    try:
        return supervise(ctx, run, payload.get("env", {}), fg, fd)
    except BaseException as e:
        traceback.print_exc()
        _handshake(fd, f"ERR supervisor failed: {e}")
        if run.executor == "docker":  # never leave a container behind
            try:
                from datmo.core.executor.docker import remove_run_containers

                remove_run_containers(run_id, None)
            except Exception:
                traceback.print_exc()
        try:
            current = runs.get(ctx, run_id)
            if not current.finished or current.status == "LOST":
                runs.save(
                    ctx,
                    current.evolve(
                        status=FAILED, ended_at=utcnow(), error=f"supervisor failed: {e}"
                    ),
                )
        except Exception:
            traceback.print_exc()
        return 125


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
