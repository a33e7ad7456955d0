"""Ctrl-C handling for the few steps that must not be cut in half."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends, then deliver them as they would have been.

    Used around the few writes that together make one record (entity, ref,
    pointer), so Ctrl-C lands before or after them, never between. A process
    with handlers of its own (the run supervisor) gets its handlers called.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    old = {int(s): signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for signum in dict.fromkeys(received):
            handler = old[signum]
            if callable(handler):
                handler(signum, None)  # Python's own SIGINT handler raises KeyboardInterrupt
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)
