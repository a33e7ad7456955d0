"""A progress line on a terminal for long work (files and bytes done, and the rate).

As git and DVC do: nothing for the first second (most snapshots end sooner), then one
line redrawn in place at most every 0.2 s, and nothing at all when the stream is not a
terminal (a log file, a pipe, a run's output). Anyone on the code path may call it:

    progress = Progress.to_stderr("Storing")
    progress.start(total_files, total_bytes)
    progress.advance(1, size)   # per file, as each ends
    progress.done()
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

DELAY_S = 1.0  # no line for work that ends sooner
EVERY_S = 0.2  # redraws at most this often


def _bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


class Progress:
    def __init__(
        self,
        stream: TextIO | None,
        what: str,
        delay_s: float = DELAY_S,
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None and _is_tty(stream) else None
        self.what = what
        self.delay_s, self.every_s = delay_s, every_s
        self.clock = clock
        self.files = self.bytes = self.total_files = self.total_bytes = 0
        self.started = self.next_draw = 0.0
        self.drawn = 0  # width of the line on screen; 0: none drawn

    @classmethod
    def to_stderr(cls, what: str) -> Progress:
        return cls(sys.stderr, what)

    def start(self, total_files: int, total_bytes: int) -> None:
        self.total_files, self.total_bytes = total_files, total_bytes
        self.files = self.bytes = 0
        self.started = self.clock()
        self.next_draw = self.started + self.delay_s

    def advance(self, files: int, nbytes: int) -> None:
        self.files += files
        self.bytes += nbytes
        if self.stream is not None and self.clock() >= self.next_draw:
            self._draw()

    def done(self) -> None:
        """The last figures on their line, when a line was drawn at all."""
        if self.stream is not None and self.drawn:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = 0

    def line(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        return (
            f"{self.what}: {self.files:,}/{self.total_files:,} files, "
            f"{_bytes(self.bytes)}/{_bytes(self.total_bytes)}, {_bytes(self.bytes / elapsed)}/s"
        )

    def _draw(self) -> None:
        assert self.stream is not None
        text = self.line()
        pad = max(0, self.drawn - len(text))  # cover the rest of a longer line before
        try:
            self.stream.write("\r" + text + " " * pad)
            self.stream.flush()
        except (OSError, ValueError):  # a closed terminal must not stop the work
            self.stream = None
            return
        self.drawn = len(text)
        self.next_draw = self.clock() + self.every_s


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False
