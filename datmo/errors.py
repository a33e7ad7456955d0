"""The one exception tree. Every user-facing failure is a DatmoError.

The CLI entry point (datmo/cli/main.py) is the only place that turns these
into a one-line message and an exit code; nothing else prints or exits.
"""

from __future__ import annotations


class DatmoError(Exception):
    """Base class: a one-line message that says what to do next."""

    exit_code = 1


class UsageError(DatmoError):
    """A bad option value or argument (mirrors click's usage exit code)."""

    exit_code = 2


class ProjectNotFound(DatmoError):
    def __init__(self, start: str) -> None:
        super().__init__(
            f"not a datmo project (or any parent up to /): {start}; run 'datmo init' first"
        )


class NotFound(DatmoError):
    """An id, file or path that does not exist."""


class AmbiguousId(DatmoError):
    def __init__(self, kind: str, prefix: str, candidates: list[str]) -> None:
        shown = ", ".join(sorted(candidates)[:10])
        more = "" if len(candidates) <= 10 else f" and {len(candidates) - 10} more"
        super().__init__(
            f"{kind} id prefix '{prefix}' is ambiguous: {shown}{more}; type more characters"
        )


class CorruptStore(DatmoError):
    """A record or object in .datmo cannot be read or fails its check."""

    exit_code = 3


class UnsavedChanges(DatmoError):
    """Refusing an action that would destroy work not held by any snapshot."""


class DiskFull(DatmoError):
    exit_code = 4


class LockTimeout(DatmoError):
    """Another datmo process held the project lock for too long."""


class Interrupted(DatmoError):
    """Ctrl-C; the operation was rolled back or left for the next command to finish."""

    exit_code = 130


class EngineUnavailable(DatmoError):
    """No Docker engine answers (or the docker SDK is missing)."""

    exit_code = 125


class BuildFailed(DatmoError):
    """An environment's image did not build; the message carries the build's last lines."""

    exit_code = 125
