"""Interactive runs: the supervisor owns the task's terminal, `datmo run -i` borrows it.

The supervisor listens on a unix socket in the run's data folder (mode 0600,
owned by the project's owner). The foreground connects, sends one header line
with its terminal size, then relays raw keystrokes one way and output the
other. The task outlives a dropped connection only as long as the supervisor
lets it: a foreground run is stopped when its `datmo run` is gone.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from datmo.core.storage.fsutil import Owner, chown

NAME = "tty.sock"
BACKLOG = 64 * 1024


class RelayServer:
    """Supervisor side: one client at a time; output goes to it and to the log."""

    def __init__(self, folder: Path, handle: Any, owner: Owner | None) -> None:
        self.handle = handle
        self.client: socket.socket | None = None
        self.backlog = bytearray()  # what the task printed before anyone attached
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        cwd = os.getcwd()
        os.chdir(folder)  # a relative name keeps deep project paths under the 108-byte limit
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(NAME)
            old = os.umask(0o177)
            try:
                self.sock.bind(NAME)
            finally:
                os.umask(old)
            chown(NAME, owner)
        finally:
            os.chdir(cwd)
        self.path = folder / NAME
        self.sock.listen(1)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                if self.client is not None:
                    with contextlib.suppress(OSError):
                        self.client.close()
                self.client = conn
                with contextlib.suppress(OSError):
                    conn.sendall(bytes(self.backlog))
            self._read(conn)

    def _read(self, conn: socket.socket) -> None:
        header = b""
        while not header.endswith(b"\n"):
            try:
                byte = conn.recv(1)
            except OSError:  # closed by close() from another thread as the run ends
                return
            if not byte:
                return
            header += byte
        parts = header.split()
        if len(parts) == 3 and parts[0] == b"SIZE":
            with contextlib.suppress(Exception):
                self.handle.resize(int(parts[1]), int(parts[2]))
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            with contextlib.suppress(Exception):
                self.handle.send_input(data)

    def send(self, data: bytes) -> None:
        with self.lock:
            self.backlog += data
            del self.backlog[: max(0, len(self.backlog) - BACKLOG)]
            if self.client is None:
                return
            try:
                self.client.sendall(data)
            except OSError:
                self.client = None

    def close(self) -> None:
        with self.lock:
            if self.client is not None:
                with contextlib.suppress(OSError):
                    self.client.shutdown(socket.SHUT_RDWR)
                    self.client.close()
                self.client = None
        with contextlib.suppress(OSError):
            self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def attach(folder: Path, timeout: float = 10.0) -> None:
    """Foreground side: relay this terminal to the task until it ends."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cwd = os.getcwd()
    deadline = time.monotonic() + timeout
    try:
        os.chdir(folder)
        while True:
            try:
                sock.connect(NAME)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        os.chdir(cwd)
    rows, cols = _size()
    sock.sendall(f"SIZE {rows} {cols}\n".encode())
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    saved = None
    if os.isatty(stdin):
        import termios
        import tty

        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin, termios.TCSANOW)  # keys typed while the task started are kept
    try:
        _pump(sock, stdin, stdout)
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        sock.close()


def _pump(sock: socket.socket, stdin: int, stdout: int) -> None:
    watch: list[Any] = [sock, stdin]
    while True:
        ready, _, _ = select.select(watch, [], [])
        if sock in ready:
            data = sock.recv(65536)
            if not data:
                return
            os.write(stdout, data)
        if stdin in ready:
            data = os.read(stdin, 4096)
            if data:
                sock.sendall(data)
            else:
                watch.remove(stdin)  # input ended (a pipe); keep showing output
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)


def _size() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
        return size.lines, size.columns
    except OSError:
        return 24, 80
