"""`datmo ARGS` driven through a pseudo-terminal, for the interactive tests."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest


class Terminal:
    """`datmo ARGS` with a pseudo-terminal as its stdin, stdout and stderr."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "datmo", *args],
            cwd=cwd,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        self.seen = b""

    def wait_attached(self, timeout: float = 60.0) -> None:
        """Until datmo has put the terminal in raw mode: it relays keystrokes from then on
        (anything typed before that is flushed by the switch, as in any raw-mode program)."""
        deadline = time.monotonic() + timeout
        while termios.tcgetattr(self.master)[3] & termios.ICANON:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"datmo never attached the terminal; it showed {self.seen!r}")
            time.sleep(0.05)  # output waits in the terminal for the next expect()

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def expect(self, *needles: bytes, timeout: float = 30.0) -> bytes:
        """Read until one of needles shows up in what was shown since the last expect."""
        deadline = time.monotonic() + timeout
        start = len(self.seen)
        while not any(n in self.seen[start:] for n in needles):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.master], [], [], max(left, 0))
            if not ready:
                pytest.fail(f"no {needles!r} within {timeout}s; the screen showed {self.seen!r}")
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: the other side is gone
                chunk = b""
            if not chunk:
                pytest.fail(f"the terminal closed before {needles!r}; it showed {self.seen!r}")
            self.seen += chunk
        return self.seen[start:]

    def wait(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:  # keep draining, so the writer never blocks on a full terminal
                with contextlib.suppress(OSError):
                    self.seen += os.read(self.master, 4096)
        return self.proc.wait(timeout=1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
