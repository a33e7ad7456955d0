"""Start a run's supervisor before the CLI has even imported click.

A Docker run's supervisor spends ~150 ms starting Python and loading the Docker SDK;
`datmo run` spends ~100 ms loading click and checking its options before it knows what
to run. Started first, the two overlap. Only the standard library is imported here.

The early supervisor waits for its orders on stdin; if `datmo run` fails before it
sends them (bad options, say), stdin reaches end of file and the supervisor exits. A
`sweep --parallel K` or `queue start -j K` starts K of them, one for each of its first
runs.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import subprocess

_early: list[subprocess.Popen[bytes]] = []
MAX_EARLY = 8


def spawn(args: list[str], cwd: str | None = None) -> subprocess.Popen[bytes]:
    import subprocess  # not at the top: every other command starts through this module

    return subprocess.Popen(
        [sys.executable, "-m", "datmo.cli.supervise", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives the terminal; Ctrl-C reaches it only through us
        cwd=cwd,
    )


def executor_hint(args: list[str]) -> str:
    """The --executor given on the command line, or "" to use the project's default."""
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--executor" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--executor="):
            return arg.partition("=")[2]
    return ""


def option_value(args: list[str], *names: str) -> str:
    """The value of the first of these options given on the command line, or ""."""
    for i, arg in enumerate(args):
        if arg == "--":
            break
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(name + "="):
                return arg.partition("=")[2]
            if len(name) == 2 and arg.startswith(name) and len(arg) > 2:
                return arg[2:]  # -j4
    return ""


def how_many(words: list[str]) -> int:
    """How many supervisors the command will want at once: one for `run`, K for a
    `sweep --parallel K` or a `queue start -j K` (each run has its own)."""
    if words[0] == "run":
        return 0 if "-i" in words or "--queue" in words else 1
    if words[0] == "sweep":
        wanted = option_value(words[1:], "--parallel")
    elif words[:2] == ["queue", "start"]:
        wanted = option_value(words[2:], "-j", "--jobs") or "1"
    else:
        return 0
    return min(int(wanted), MAX_EARLY) if wanted.isdigit() else 0


def start_early(args: list[str]) -> None:
    """Called with the CLI's arguments; starts the supervisors a run, a sweep or a queue
    worker will hand its runs to, while the CLI loads and stages them."""
    words = [a for a in args if a != "--debug"]
    if not words or "--help" in words or "-h" in words:
        return
    hint = executor_hint(words[1:])
    try:
        for _ in range(how_many(words)):
            _early.append(spawn(["--early", hint]))
    except OSError:
        pass  # launch starts them the usual way and reports what is wrong


def take() -> subprocess.Popen[bytes] | None:
    """An early supervisor still waiting for its orders, once; None when none is left."""
    while _early:
        proc = _early.pop()
        if proc.poll() is None:
            return proc
    return None


def leftover() -> list[subprocess.Popen[bytes]]:
    """The early supervisors nobody took (to be sent away)."""
    procs = list(_early)
    _early.clear()
    return procs
