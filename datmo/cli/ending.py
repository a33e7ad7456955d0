"""How a command that runs a task ends: datmo's own failures exit 125 (as `docker run`
does), and a finished run's status is the command's exit code."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import click


@contextlib.contextmanager
def datmo_failure_exit() -> Iterator[None]:
    """datmo's own failures in `run` exit 125, as `docker run` does; the task's code is its own."""
    from datmo.errors import DatmoError

    try:
        yield
    except (DatmoError, click.UsageError) as e:
        err = e if isinstance(e, DatmoError) else DatmoError(e.format_message())
        if err.exit_code != 130:
            err.exit_code = 125
        raise err from None


def exit_code(final: Any, say: Callable[[str], None]) -> int:
    """The exit code of a command that followed a run to its end, saying how it ended."""
    short = final.id[:8]
    if final.status == "STOPPED":
        say(f"run {short} STOPPED; its after snapshot is {(final.after_snapshot_id or '-')[:8]}")
        return 130
    if final.status == "LOST":
        say(f"run {short} LOST: {final.error}")
        return 125
    if final.error:
        say(f"run {short} {final.status}: {final.error}")
    else:
        say(f"run {short} {final.status} (exit code {final.exit_code})")
    if final.workdir and final.options.get("keep_workdir") and final.status != "SUCCESS":
        say(f"its working copy is kept in {final.workdir} ('datmo gc' removes it)")
    if final.status == "FAILED" and (final.error or "").startswith("TIMEOUT"):
        return 124  # as timeout(1): the time limit, not the task's own code
    if final.exit_code is None:
        return 125
    if final.status == "FAILED" and not final.exit_code:
        return 1  # failed for another reason than its code (a Slurm time limit, say)
    return int(final.exit_code)
