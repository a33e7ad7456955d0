"""A tar stream written straight to a pipe: headers from tarfile, contents in 1 MiB
pieces, each object hashed as it is read so only bytes that match their name leave."""

from __future__ import annotations

import os
import tarfile
import time

from blake3 import blake3

from datmo.core.remote.layout import Item, object_key
from datmo.errors import CorruptStore

CHUNK = 1 << 20


def write(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _header(name: str, size: int, mode: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, int(time.time())
    return info.tobuf(format=tarfile.GNU_FORMAT)


def _pad(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


def send_bytes(fd: int, name: str, data: bytes) -> None:
    write(fd, _header(name, len(data), 0o644) + data + _pad(len(data)))


def send_object(fd: int, item: Item) -> None:
    """One object into the tar stream, hashed as read; a mismatch raises (the caller tears
    the stream so the host keeps nothing of it)."""
    try:
        src = os.open(item.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise CorruptStore(f"cannot read {item.path}: {e.strerror}; run 'datmo fsck'") from None
    try:
        size = os.fstat(src).st_size
        write(fd, _header(object_key(item.digest), size, 0o444))
        h, left, buf = blake3(max_threads=1), size, bytearray(CHUNK)
        while left > 0:
            n = os.readv(src, [buf])
            if n == 0:
                break
            view = memoryview(buf)[: min(n, left)]
            h.update(view)
            write(fd, view)
            left -= len(view)
        if left or h.hexdigest() != item.digest:
            raise CorruptStore(
                f"{item.path} does not match its hash {item.digest[:12]}; nothing of it was "
                "sent; run 'datmo fsck'"
            )
        write(fd, _pad(size))
    finally:
        os.close(src)


def end(fd: int) -> None:
    """The two empty blocks that close a tar stream."""
    write(fd, b"\0" * (tarfile.RECORDSIZE * 2))
