"""Framing for datmo's binary caches (stat cache, tree stamp): marshal payloads.

Marshal's format belongs to one Python version and numbers are stored in native
byte order, so the header names both; with a crc32 of the payload, any mismatch
or damage reads as "no cache", which only costs time.
"""

from __future__ import annotations

import marshal
import os
import struct
import sys
import zlib

# Read on the start-up path (tree/unchanged.py): typing and fsutil only where written.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from datmo.core.storage.fsutil import Owner

# magic, format version, interpreter (cache tag + marshal version), byte order, crc32
_HEADER = struct.Struct("<8sH16scI")
_PYTHON = f"{sys.implementation.cache_tag}/{marshal.version}".encode()[:16].ljust(16)
_ORDER = sys.byteorder[0].encode()


def write(
    path: os.PathLike[str], magic: bytes, version: int, data: Any, owner: Owner | None
) -> bool:
    """Write atomically (not durably: a cache); False when the disk is full or read-only."""
    import errno
    from pathlib import Path

    from datmo.core.storage.fsutil import atomic_write_bytes, makedirs

    target = Path(path)
    payload = marshal.dumps(data)
    header = _HEADER.pack(magic, version, _PYTHON, _ORDER, zlib.crc32(payload))
    try:
        makedirs(target.parent, owner)
        atomic_write_bytes(target, header + payload, owner, durable=False)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        return False
    return True


def read(path: str | os.PathLike[str], magic: bytes, version: int) -> Any:
    """What write() stored; None when missing, damaged, or from another format or Python.
    Callers still check the shape of what they get (a buggy writer)."""
    name = os.fspath(path)  # never an int: open() would take it for a file descriptor
    try:
        with open(name, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if len(data) < _HEADER.size:
        return None
    *head, crc = _HEADER.unpack_from(data)
    payload = memoryview(data)[_HEADER.size :]
    if head != [magic, version, _PYTHON, _ORDER] or zlib.crc32(payload) != crc:
        return None
    try:
        return marshal.loads(payload)
    except Exception:  # marshal raises several types on bad input
        return None
