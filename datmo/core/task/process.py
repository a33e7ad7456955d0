"""Is a recorded process still the same process? (pid plus start time, no docker needed).
And so: is a run whose record says RUNNING still running?"""

from __future__ import annotations

import os
import socket
import time

from datmo.core.entity.run import LOST, RUNNING, Run

BEAT_S = 30.0  # how often a supervisor on another host says it is alive
BEAT_TIMEOUT_S = 150.0  # heard from within this, it is (a network filesystem lags)


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


def this_host() -> str:
    """This machine in this boot: its name and boot id (a reboot is another host: no
    process of the last boot is alive)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()[:8]
    except OSError:
        boot = ""
    return f"{socket.gethostname()}:{boot}"


def me(**more: object) -> dict[str, object]:
    """This process, as a record names its supervisor."""
    pid = os.getpid()
    return {"pid": pid, "start": start_time(pid), "host": this_host(), "beat": time.time(), **more}


def effective(run: Run) -> Run:
    """A RUNNING run whose supervisor is gone is LOST, whatever the record says. On this
    host (in this boot) that is its process; on another (a compute node) it is a
    heartbeat the supervisor writes into the record, heard from within BEAT_TIMEOUT_S."""
    if run.status != RUNNING:
        return run
    sup = run.supervisor
    host = sup.get("host")
    if host and host != this_host():
        beat = sup.get("beat")
        if isinstance(beat, (int, float)) and time.time() - beat < BEAT_TIMEOUT_S:
            return run
        why = f"its supervisor on {host.partition(':')[0]} has not been heard from"
        return run.evolve(status=LOST, error=run.error or why)
    if alive(sup.get("pid"), sup.get("start")):
        return run
    return run.evolve(status=LOST, error=run.error or "its supervisor process is gone")
