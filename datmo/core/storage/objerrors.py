"""The one-line errors of the object store, shared by everything that reads or writes
objects (objects.py, writeout.py)."""

from __future__ import annotations

import errno
from pathlib import Path

from datmo.errors import CorruptStore, DatmoError, DiskFull


def write_error(e: OSError, doing: str) -> DatmoError:
    if e.errno == errno.EDQUOT:
        return DiskFull(f"disk quota exceeded while {doing}; free some space and try again")
    if e.errno == errno.ENOSPC:
        return DiskFull(f"disk full while {doing}; free some space and try again")
    return DatmoError(f"error while {doing}: {e.strerror or e}")


def read_error(e: OSError, src: Path) -> DatmoError:
    if e.errno == errno.ELOOP:
        return DatmoError(f"cannot store {src}: it is a symbolic link")
    return DatmoError(f"cannot read {src}: {e.strerror or e}")


def object_error(digest: str, e: OSError | None = None) -> CorruptStore:
    if isinstance(e, FileNotFoundError):
        problem = "is missing from .datmo/objects"
    elif e is not None:
        problem = f"in .datmo/objects cannot be read ({e.strerror or e})"
    else:
        problem = "in .datmo/objects is damaged (hash mismatch)"
    return CorruptStore(f"object {digest[:12]} {problem}; run 'datmo fsck'")
