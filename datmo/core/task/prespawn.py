"""Start a run's supervisor before the CLI has even imported click.

A Docker run's supervisor spends ~150 ms starting Python and loading the Docker SDK;
`datmo run` spends ~100 ms loading click and checking its options before it knows what
to run. Started first, the two overlap. Only the standard library is imported here.

The early supervisor waits for its orders on stdin; if `datmo run` fails before it
sends them (bad options, say), stdin reaches end of file and the supervisor exits.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import subprocess

_early: subprocess.Popen[bytes] | None = None


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


def start_early(args: list[str]) -> None:
    """Called with the CLI's arguments; starts a supervisor when they ask for a run."""
    global _early
    words = [a for a in args if a != "--debug"]
    if not words or words[0] != "run" or "--help" in words or "-i" in words:
        return
    try:
        _early = spawn(["--early", executor_hint(words[1:])])
    except OSError:
        _early = None  # launch starts one the usual way and reports what is wrong


def take() -> subprocess.Popen[bytes] | None:
    """The early supervisor, once, if it is still waiting for its orders."""
    global _early
    proc, _early = _early, None
    if proc is not None and proc.poll() is not None:
        return None
    return proc
