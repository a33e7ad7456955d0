"""Tasks as plain processes, for machines without Docker (HPC clusters, laptops)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

from datmo.core.executor import INT_GRACE_S, TERM_GRACE_S, TaskContext, pyprobe, shell_argv
from datmo.core.storage.fsutil import Owner
from datmo.core.task.process import start_time
from datmo.errors import DatmoError
from datmo.task_sdk import PATH as SDK_PATH

# Asked of the task's own python3 (not datmo's), so the record shows what the task ran with.


def _gpu_table() -> list[tuple[str, str, str]] | None:
    """(index, uuid, model) of each GPU nvidia-smi sees; None when it is missing or fails."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,uuid,name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [tuple(p.strip() for p in line.split(",", 2)) for line in out.splitlines()]
    return [(r[0], r[1], r[2]) for r in rows if len(r) == 3]


def select_gpus(requested: str | None, inherited: str | None) -> tuple[str | None, list[str]]:
    """(CUDA_VISIBLE_DEVICES for the task, or None to leave it; the models the task will see).

    Indexes in --gpus count within the GPUs the caller may use: where a scheduler (Slurm,
    say) has already set CUDA_VISIBLE_DEVICES=2,3, --gpus 0 means GPU 2, as CUDA counts.
    Asking for a GPU that is not there is refused before the task starts.
    """
    table = _gpu_table()
    if table is None:
        if requested:
            raise DatmoError(
                "GPUs were asked for, but nvidia-smi finds no NVIDIA GPU here; "
                "run without --gpu/--gpus"
            )
        return None, []
    if inherited is None:
        pool = [idx for idx, _, _ in table]
    else:  # "" hides every GPU; entries may be indexes or (prefixes of) UUIDs
        pool = [p.strip() for p in inherited.split(",") if p.strip()]

    def model(entry: str) -> str:
        for idx, uuid, name in table:
            if entry == idx or (entry.startswith("GPU-") and uuid.startswith(entry)):
                return name
        return entry  # a MIG instance or an id nvidia-smi does not list: keep what we know

    where = "" if inherited is None else f" (CUDA_VISIBLE_DEVICES={inherited!r})"
    if requested is None:
        return None, [model(e) for e in pool]
    if not pool:
        raise DatmoError(f"GPUs were asked for, but none is visible here{where}")
    if requested == "all":
        return None, [model(e) for e in pool]
    wanted = [int(i) for i in requested.split(",")]
    if max(wanted) >= len(pool):
        n = len(pool)
        have = f"there are {n} GPUs here, 0 to {n - 1}" if n > 1 else "there is 1 GPU here, 0"
        raise DatmoError(f"--gpus {requested}: {have}{where}; pick from those")
    chosen = [pool[i] for i in wanted]
    return ",".join(chosen), [model(e) for e in chosen]


def _controlling_tty() -> None:
    # New session whose controlling terminal is the pty, so Ctrl-C typed there reaches the task.
    import fcntl
    import termios

    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class LocalHandle:
    def __init__(
        self, proc: subprocess.Popen[bytes], info: dict[str, Any], pty_fd: int | None = None
    ) -> None:
        self.proc = proc
        self.info = info
        self.pty_fd = pty_fd  # interactive runs talk to the task through a pseudo-terminal
        self.probe: pyprobe.Probe | None = None

    def late_info(self, wait: bool = False) -> dict[str, Any]:
        if self.probe is None or not (wait or self.probe.done()):
            return {}
        probe, self.probe = self.probe, None
        return {"platform": probe.result()}

    def output(self) -> Iterator[bytes]:
        if self.pty_fd is not None:
            fd = self.pty_fd
        else:
            assert self.proc.stdout is not None
            fd = self.proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the terminal's last user closed it
                return
            if not chunk:
                return
            yield chunk

    def send_input(self, data: bytes) -> None:
        if self.pty_fd is not None:
            os.write(self.pty_fd, data)

    def resize(self, rows: int, cols: int) -> None:
        if self.pty_fd is not None:
            import fcntl
            import struct
            import termios

            fcntl.ioctl(self.pty_fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def wait(self) -> int:
        code = self.proc.wait()
        return 128 - code if code < 0 else code  # killed by signal N -> 128+N, as shells report

    def stop(self) -> None:
        steps = (
            (signal.SIGINT, INT_GRACE_S),
            (signal.SIGTERM, TERM_GRACE_S),
            (signal.SIGKILL, 5.0),
        )
        for sig, wait in steps:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def cleanup(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything the task left in its group


class LocalExecutor:
    name = "local"

    def start(self, task: TaskContext) -> LocalHandle:
        env = dict(os.environ)
        env.update(task.env)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SDK_PATH), env.get("PYTHONPATH")) if p)
        env.update(task.config_env(str(task.config_file)))
        env["DATMO_METRICS_FILE"] = str(task.metrics_file)
        env["DATMO_REPLIES"] = str(task.metrics_file.parent / "replies")
        env["DATMO_RUN_ID"] = task.run.id
        env.setdefault("PYTHONUNBUFFERED", "1")
        visible, models = select_gpus(task.run.options.get("gpus"), env.get("CUDA_VISIBLE_DEVICES"))
        if visible is not None:
            env["CUDA_VISIBLE_DEVICES"] = visible
        # What the task runs with is probed beside it, not before it: a run starts at once.
        owner = Owner(*task.owner) if os.geteuid() == 0 else None
        probe: pyprobe.Probe | None = pyprobe.Probe(env, task.start_folder(), task.cache, owner)
        info: dict[str, Any] = {"gpus": models}
        if probe is not None and probe.proc is None:  # a kept answer: no process to wait for
            info["platform"], probe = probe.result(), None
        uid, gid = task.owner
        drop = os.geteuid() == 0 and uid != 0
        ids: dict[str, Any] = {"user": uid, "group": gid, "extra_groups": []} if drop else {}
        cmd = shell_argv(task.run.command)
        cwd = task.start_folder()
        if task.run.options.get("interactive"):
            import pty

            master, slave = pty.openpty()
            proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                preexec_fn=_controlling_tty,
                **ids,
            )
            os.close(slave)
            info["process"] = {"pid": proc.pid, "start": start_time(proc.pid)}
            handle = LocalHandle(proc, info, master)
            handle.probe = probe
            return handle
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop reaches every child
            **ids,
        )
        info["process"] = {"pid": proc.pid, "start": start_time(proc.pid)}
        handle = LocalHandle(proc, info)
        handle.probe = probe
        return handle
