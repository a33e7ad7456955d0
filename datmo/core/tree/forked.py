"""Splitting a walk over a big tree between processes, one per core, as git's
preload-index does: the time is in lstat calls, which one process makes one at a time.

On the start-up path of a re-snapshot (stamp.py, unchanged.py): only `os` and `sys`
at run time.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

PARALLEL_FROM = 20_000  # names; below this a fork costs more than it saves
MAX_WORKERS = 4


def in_children(
    parts: list[tuple[int, int, int]], work: Callable[[tuple[int, int, int]], list[int]]
) -> list[int] | None:
    """work(part) for every part, the first here and the others in forked children that
    send their answers back through a pipe (marshal); None if a child fails."""
    import marshal

    children: list[tuple[int, int]] = []
    try:
        for part in parts[1:]:
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    os.close(r)
                    with open(w, "wb") as out:
                        out.write(marshal.dumps(work(part)))
                    code = 0
                except BaseException:  # Ctrl-C included: report a failure, just exit
                    pass
                finally:
                    os._exit(code)
            os.close(w)
            children.append((pid, r))
        found = work(parts[0])
        while children:
            pid, r = children[-1]
            with open(r, "rb") as f:
                data = f.read()
            children.pop()
            _, status = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                return None
            found += marshal.loads(data)
        return sorted(found)
    finally:
        for pid, r in children:  # left unread: an error here, or Ctrl-C
            os.close(r)
            try:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            except OSError:
                pass


def workers(names: int) -> int:
    """Processes to check with: one per usable core, none extra while threads run
    (a fork copies only the calling thread; a lock another holds would stay held)."""
    if names < PARALLEL_FROM or not hasattr(os, "fork"):
        return 1
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


def parts(names: list[list[str]], n: int) -> list[tuple[int, int, int]]:
    """Split the folders into n runs of about as many names: (first, last, name offset)."""
    total = sum(map(len, names))
    parts: list[tuple[int, int, int]] = []
    first = start = seen = 0
    for k, listed in enumerate(names):
        seen += len(listed)
        if len(parts) < n - 1 and seen * n >= total * (len(parts) + 1):
            parts.append((first, k + 1, start))
            first, start = k + 1, seen
    parts.append((first, len(names), start))
    return parts
