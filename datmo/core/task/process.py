"""Is a recorded process still the same process? (pid plus start time, no docker needed).
And so: is a run whose record says RUNNING still running?"""

from __future__ import annotations

import os

from datmo.core.entity.run import LOST, RUNNING, Run


def start_time(pid: int) -> int | None:
    """Start time in clock ticks since boot (Linux /proc), or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return _exists_fallback(pid)
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    if fields and fields[0] == b"Z":
        return None  # a zombie has finished; only its parent has not collected it yet
    return int(fields[19])


def _exists_fallback(pid: int) -> int | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return 0
    return 0


def alive(pid: int | None, started: int | None) -> bool:
    """True while the process recorded as (pid, started) is still running."""
    if not pid:
        return False
    now = start_time(pid)
    if now is None:
        return False
    return started is None or now == started or now == 0


def effective(run: Run) -> Run:
    """A RUNNING run whose supervisor is gone is LOST, whatever the record says."""
    if run.status != RUNNING:
        return run
    sup = run.supervisor
    if alive(sup.get("pid"), sup.get("start")):
        return run
    return run.evolve(status=LOST, error=run.error or "its supervisor process is gone")
