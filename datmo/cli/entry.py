"""The `datmo` console script: a quick path for one command, else start a run's
supervisor early, then the CLI."""

from __future__ import annotations

import os
import sys


def main() -> None:
    from datmo.cli.quick import run

    quick = run(sys.argv[1:])
    code = quick if quick is not None else _cli()
    # Skip the interpreter's teardown, ~10 ms of freeing every module one by one: by now
    # every file datmo wrote is closed (context managers), no thread holds work, and no
    # exit handler is registered. Only the standard streams may hold buffered output.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: what it held is already lost
            code = code or 141
    os._exit(code)


def _cli() -> int:
    from datmo.core.task.prespawn import start_early

    start_early(sys.argv[1:])
    from datmo.cli.main import main as cli_main

    try:
        cli_main()
        return 0
    except SystemExit as e:
        return exit_code(e.code)


def exit_code(value: object) -> int:
    """What Python would exit with for SystemExit(value)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1
