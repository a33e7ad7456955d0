"""The `datmo` console script: start a run's supervisor early, then the CLI."""

from __future__ import annotations

import os
import sys


def main() -> None:
    from datmo.core.prespawn import start_early

    start_early(sys.argv[1:])
    from datmo.cli.main import main as cli_main

    try:
        cli_main()
        code = 0
    except SystemExit as e:
        code = exit_code(e.code)
    # Skip the interpreter's teardown, ~10 ms of freeing every module one by one: by now
    # every file datmo wrote is closed (context managers), no thread holds work, and no
    # exit handler is registered. Only the standard streams may hold buffered output.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: what it held is already lost
            code = code or 141
    os._exit(code)


def exit_code(value: object) -> int:
    """What Python would exit with for SystemExit(value)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1
