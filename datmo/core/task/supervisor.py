"""The supervisor: the loop that owns one running task.

A run's supervisor is a small background datmo process (`python -m datmo.cli.supervise`,
started by the task controller) that outlives the terminal. This module is its
mechanism, with no records in it: it relays the task's output to the log (secret
values redacted, `key: number` lines captured), honours stop requests, and waits for
the exit code. What the run records before and after is the run controller's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from datmo.core.executor import TaskHandle
from datmo.core.task.metrics import OutputCapture

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


class StopEvent(threading.Event):
    """Set by the first stop signal; `why` names it: "stop" (SIGTERM, SIGINT, SIGHUP:
    `datmo stop`, or the terminal going away) or, in a Slurm job, "timeout" (SIGUSR1:
    the time limit is near), "cancel" (SIGTERM: scancel or preemption) and "stop"
    (SIGUSR2: `datmo stop`)."""

    why = ""


def stop_signals(slurm: bool = False) -> StopEvent:
    stop = StopEvent()
    names: dict[int, str] = {signal.SIGTERM: "stop", signal.SIGINT: "stop", signal.SIGHUP: "stop"}
    if slurm:
        names |= {signal.SIGTERM: "cancel", signal.SIGUSR1: "timeout", signal.SIGUSR2: "stop"}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            stop.why = names.get(signum, "stop")
            stop.set()

    for sig in names:
        signal.signal(sig, on_signal)
    return stop


@dataclass
class Ended:
    """How a task ended, as the supervisor saw it."""

    code: int  # -1: no exit code came
    stopped: bool  # a stop was asked for while it ran
    log_error: str | None  # the log could not be written in full


def supervise(
    handle: TaskHandle,
    log_path: Path,
    secrets: list[str],
    *,
    capture: OutputCapture | None,
    stop_requested: Callable[[], bool],
    poll: Callable[[], None],
    relay: Any = None,
) -> Ended:
    """Relay the task's output to the log until it ends; stop it once stop_requested().

    poll is called every POLL_S while the task runs, and once after it ends.
    capture reads the output for metrics; relay (a ttyrelay.RelayServer) gets the output
    too, for an interactive run.
    """
    code_box: list[int] = []
    with open(log_path, "ab") as log:
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
        while waiter.is_alive():
            poll()
            if not stopped and stop_requested():
                stopped = True
                threading.Thread(target=handle.stop, daemon=True).start()
            waiter.join(POLL_S)
        pump.join(10)
        out.close()
        poll()
        if relay:
            relay.close()
    if capture:
        capture.close()
    code = code_box[0] if code_box else -1
    return Ended(code, stopped, out.failed)
