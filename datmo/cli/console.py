"""Writing to the terminal without click: text hygiene, and the one place errors
become a line on stderr and an exit code.

datmo.cli.main handles click's own usage errors, then hands every other exception
to report(); so does the click-free path in datmo.cli.quick.
"""

from __future__ import annotations

import errno
import sys

from datmo.errors import DatmoError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without loading typing at start-up
if TYPE_CHECKING:
    from typing import TextIO


def printable(text: str) -> str:
    """File names that are not UTF-8 (surrogate escapes) are shown, never a crash."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def one_line(text: str) -> str:
    """Errors are one line: control characters from user input are shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def write(stream: TextIO, text: str) -> None:
    """A line, flushed at once (as click.echo does), so stdout and stderr keep their order."""
    stream.write(printable(text) + "\n")
    stream.flush()


def _say(text: str) -> None:
    write(sys.stderr, text)


def report(exc: BaseException, debug: bool) -> int:
    """Say what went wrong in one line; the exit code. With debug, re-raise instead
    (the caller is inside an `except`), for the full traceback."""
    if isinstance(exc, BrokenPipeError):
        return 141
    if debug:
        raise exc
    if isinstance(exc, KeyboardInterrupt):
        _say("datmo: interrupted")
        return 130
    if isinstance(exc, DatmoError):
        _say(f"datmo: error: {one_line(str(exc))}")
        return exc.exit_code
    if isinstance(exc, OSError):
        # The system refused something (a name too long, a read-only folder): say what.
        where = f": {exc.filename}" if exc.filename else ""
        _say(f"datmo: error: {one_line(exc.strerror or str(exc))}{one_line(str(where))}")
        return 4 if exc.errno in (errno.ENOSPC, errno.EDQUOT) else 1
    if isinstance(exc, Exception):
        _say(
            f"datmo: unexpected error: {exc.__class__.__name__}: {one_line(str(exc))} "
            "(run with --debug for details, and please report it)"
        )
        return 1
    raise exc  # SystemExit and the like are not errors to report
