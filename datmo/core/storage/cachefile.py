"""Framing for datmo's binary caches (stat cache, tree stamp): marshal payloads.

Marshal's format belongs to one Python version and numbers are stored in native
byte order, so the header names both; with a crc32 of the payload, any mismatch
or damage reads as "no cache", which only costs time.
"""

from __future__ import annotations

import errno
import marshal
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

from datmo.core.storage.fsutil import Owner, atomic_write_bytes, makedirs

# magic, format version, interpreter (cache tag + marshal version), byte order, crc32
_HEADER = struct.Struct("<8sH16scI")
_PYTHON = f"{sys.implementation.cache_tag}/{marshal.version}".encode()[:16].ljust(16)
_ORDER = sys.byteorder[0].encode()


def write(path: Path, magic: bytes, version: int, data: Any, owner: Owner | None) -> bool:
    """Write atomically (not durably: a cache); False when the disk is full or read-only."""
    payload = marshal.dumps(data)
    header = _HEADER.pack(magic, version, _PYTHON, _ORDER, zlib.crc32(payload))
    try:
        makedirs(path.parent, owner)
        atomic_write_bytes(path, header + payload, owner, durable=False)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        return False
    return True


def read(path: Path, magic: bytes, version: int) -> Any:
    """What write() stored; None when missing, damaged, or from another format or Python.
    Callers still check the shape of what they get (a buggy writer)."""
    try:
        data = path.read_bytes()
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
