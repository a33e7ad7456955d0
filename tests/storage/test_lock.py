"""The project lock: re-entrant within a thread, exclusive between threads as between
processes, and a filesystem without locks (Lustre without -o flock) is one clear error."""

from __future__ import annotations

import errno
import fcntl
import threading
import time
from pathlib import Path

import pytest

from datmo.core.controller.project import open_project
from datmo.errors import DatmoError


def test_threads_of_one_process_take_turns(project: Path) -> None:
    store = open_project().store
    inside: list[int] = []
    overlap: list[bool] = []

    def work(n: int) -> None:
        for _ in range(20):
            with store.lock(), store.lock():  # re-entrant in its own thread
                inside.append(n)
                overlap.append(len(inside) > 1)
                time.sleep(0.001)
                inside.remove(n)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(overlap) == 60 and not any(overlap)


def test_a_filesystem_without_locks_is_one_clear_error(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_project().store

    def refuse(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refuse)
    with pytest.raises(DatmoError, match=r"refuses file locks.*-o flock"), store.lock():
        pass
