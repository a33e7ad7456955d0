"""Writing many git objects as one pack: a file and an index instead of a file per object.

A first snapshot of 100,000 source files as loose objects creates 100,000 files and
fsyncs each (most of its time); a pack is one file written in a stream, one fsync, and
an index that git reads as it reads the packs its own gc writes. The formats are git's
(Documentation/gitformat-pack.txt): pack version 2, index version 2, no deltas.

The pack is written under a temporary name that git's gc removes after a crash
("tmp_pack_"), renamed first, then its index: git looks for packs by their index, so a
reader sees every object of the pack or none.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from pathlib import Path

from datmo.core.shadowgit import format as gitformat
from datmo.core.storage.fsutil import Owner, fsync_dir, makedirs, mkstemp

_TYPES = {b"commit": 1, b"tree": 2, b"blob": 3, b"tag": 4}
_LARGE = 0x80000000  # offsets from here on go to the index's 8-byte table


def entry_header(kind: bytes, size: int) -> bytes:
    """The type-and-size varint that starts each object in a pack."""
    byte = (_TYPES[kind] << 4) | (size & 0x0F)
    size >>= 4
    out = bytearray()
    while size:
        out.append(byte | 0x80)
        byte, size = size & 0x7F, size >> 7
    out.append(byte)
    return bytes(out)


def index_bytes(entries: dict[bytes, tuple[int, int]], pack_sum: bytes) -> bytes:
    """A version-2 .idx for binary id -> (offset, crc32)."""
    ids = sorted(entries)
    fanout = [0] * 256
    for digest in ids:
        fanout[digest[0]] += 1
    total = 0
    for i, n in enumerate(fanout):
        total += n
        fanout[i] = total
    small: list[int] = []
    large: list[int] = []
    for digest in ids:
        offset = entries[digest][0]
        if offset < _LARGE:
            small.append(offset)
        else:
            small.append(_LARGE | len(large))
            large.append(offset)
    parts = [
        b"\xfftOc" + struct.pack(">I", 2),
        struct.pack(">256I", *fanout),
        b"".join(ids),
        struct.pack(f">{len(ids)}I", *(entries[d][1] for d in ids)),
        struct.pack(f">{len(ids)}I", *small),
        struct.pack(f">{len(large)}Q", *large),
        pack_sum,
    ]
    body = b"".join(parts)
    return body + gitformat.sha1(body).digest()


class PackWriter:
    """Streams objects into a temporary pack in PACK_DIR; finish() makes it visible."""

    def __init__(self, pack_dir: Path, owner: Owner | None) -> None:
        makedirs(pack_dir, owner)
        self.pack_dir = pack_dir
        self.owner = owner
        fd, self._tmp = mkstemp(pack_dir, prefix="tmp_pack_")
        self._file = open(fd, "w+b")  # noqa: SIM115 - closed in finish() or abort()
        self._file.write(b"PACK" + struct.pack(">II", 2, 0))  # the count is set at the end
        self._offset = 12
        self.entries: dict[bytes, tuple[int, int]] = {}  # binary id -> (offset, crc32)

    def __contains__(self, digest: bytes) -> bool:
        return digest in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, digest: bytes, kind: bytes, body: bytes) -> None:
        if digest in self.entries:
            return
        data = entry_header(kind, len(body)) + zlib.compress(body, 1)  # level 1, as loose ones
        self._file.write(data)
        self.entries[digest] = (self._offset, zlib.crc32(data))
        self._offset += len(data)

    def finish(self) -> Path:
        """Make the pack durable and visible; returns its index's path."""
        f = self._file
        f.seek(8)
        f.write(struct.pack(">I", len(self.entries)))
        f.seek(0)
        h = gitformat.sha1()
        while chunk := f.read(1 << 20):  # in the page cache: written a moment ago
            h.update(chunk)
        pack_sum = h.digest()
        f.write(pack_sum)
        f.flush()
        os.fchmod(f.fileno(), 0o444)
        if self.owner is not None:
            os.fchown(f.fileno(), self.owner.uid, self.owner.gid)
        os.fsync(f.fileno())
        f.close()
        name = f"pack-{pack_sum.hex()}"
        os.replace(self._tmp, self.pack_dir / f"{name}.pack")
        idx = self.pack_dir / f"{name}.idx"
        fd, tmp = mkstemp(self.pack_dir, prefix="tmp_idx_")
        try:
            with open(fd, "wb") as out:
                out.write(index_bytes(self.entries, pack_sum))
                out.flush()
                os.fchmod(fd, 0o444)
                if self.owner is not None:
                    os.fchown(fd, self.owner.uid, self.owner.gid)
                os.fsync(fd)
            os.replace(tmp, idx)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        fsync_dir(self.pack_dir)
        return idx

    def abort(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)
