"""The progress line: only on a terminal, only after a second, redrawn every 0.2 s."""

from __future__ import annotations

import io
import os
import pty
from typing import Any

from datmo.core.util.progress import Progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run(stream: Any, clock: Clock, steps: int, step_s: float) -> None:
    p = Progress(stream, "Storing", clock=clock)
    p.start(steps, steps * 50_000)
    for _ in range(steps):
        clock.now += step_s
        p.advance(1, 50_000)
    p.done()


def test_nothing_when_the_work_ends_within_a_second() -> None:
    out, clock = Tty(), Clock()
    run(out, clock, 90, 0.01)  # 0.9 s
    assert out.getvalue() == ""


def test_a_line_redrawn_at_most_every_fifth_of_a_second() -> None:
    out, clock = Tty(), Clock()
    run(out, clock, 300, 0.01)  # 3 s: drawn from 1 s on, every 0.2 s, then the last figures
    text = out.getvalue()
    draws = text.split("\r")[1:]
    assert 10 <= len(draws) <= 12, draws
    assert draws[-1].rstrip("\n").rstrip() == "Storing: 300/300 files, 15.0 MB/15.0 MB, 5.0 MB/s"
    assert text.endswith("\n") and text.count("\n") == 1


def test_nothing_when_the_stream_is_not_a_terminal() -> None:
    out, clock = io.StringIO(), Clock()
    run(out, clock, 300, 0.01)
    assert out.getvalue() == ""


def test_on_a_real_pty() -> None:
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            run(tty, Clock(), 300, 0.01)
        data = os.read(master, 65536).decode()
        assert "\rStoring: 300/300 files" in data
    finally:
        os.close(master)
        os.close(slave)


def test_snapshot_create_draws_nothing_when_stderr_is_not_a_terminal(
    project: Any, cli: Any, tree: Any
) -> None:
    tree(project, {f"d/{i}.bin": b"\0" * 10 for i in range(40)})
    r = cli("snapshot", "create", "-m", "one")
    assert r.exit_code == 0 and "Storing" not in r.stderr
