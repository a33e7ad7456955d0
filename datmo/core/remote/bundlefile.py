"""A bundle file: what a push would send, in one uncompressed tar.

    datmo-bundle.json            first: the project, when, what it holds
    objects/ab/cdef...           file contents and run data (BLAKE3-named)
    code.bundle                  a git bundle of the snapshots' commits
    records/<kind>/<id>.json     envelopes, last (environments, snapshots, sweeps, runs)

Reading never extracts: each member is checked by name against that list (only regular
files; no links, devices, '..' or absolute paths can be named), read into the object
store through its hash check, or into memory (records), or into one scratch file (the git
bundle). Any surprise refuses the whole bundle, and the objects it had added are removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from blake3 import blake3

from datmo.core.remote.layout import (
    KINDS,
    MAX_RECORD,
    DamagedRemote,
    Envelope,
    Item,
    object_key,
    parse_envelope,
    parse_object_key,
    parse_record_key,
)
from datmo.core.storage.fsutil import fsync_dir, mkstemp
from datmo.errors import CorruptStore, DatmoError, DiskFull

if TYPE_CHECKING:
    from datmo.core.storage.objects import ObjectStore

META = "datmo-bundle.json"
CODE = "code.bundle"
FORMAT = 1
CHUNK = 1 << 20


class DamagedBundle(DamagedRemote):
    pass


@dataclass
class Contents:
    meta: dict[str, Any]
    envelopes: dict[str, dict[str, Envelope]] = field(
        default_factory=lambda: {k: {} for k in KINDS}
    )
    code: Path | None = None  # the git bundle, in scratch
    objects: set[str] = field(default_factory=set)  # every object the bundle holds
    added: list[str] = field(default_factory=list)  # the ones this read put in the store


class _Hashing:
    """A file read through, hashing what tarfile copies out of it."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.h = f, blake3(max_threads=1)

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.h.update(data)
        return data


def write(
    dest: Path,
    meta: dict[str, Any],
    objects: list[Item],
    code: Path | None,
    records: list[tuple[str, bytes]],
) -> None:
    """The bundle at dest, whole or not at all (a temporary name, fsync, rename)."""
    fd, tmp = mkstemp(dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw:
            with tarfile.TarFile(
                fileobj=raw, mode="w", format=tarfile.GNU_FORMAT, copybufsize=CHUNK
            ) as tar:
                _add(tar, META, json.dumps({**meta, "format": FORMAT}, sort_keys=True).encode())
                for item in objects:
                    with open(item.path, "rb") as f:
                        src = _Hashing(f)
                        tar.addfile(_info(object_key(item.digest), item.size, 0o444), src)
                    if src.h.hexdigest() != item.digest:
                        raise CorruptStore(f"{item.path} does not match its hash; run 'datmo fsck'")
                if code is not None:
                    with open(code, "rb") as f:
                        tar.addfile(_info(CODE, code.stat().st_size, 0o644), f)
                for key, data in records:
                    _add(tar, key, data)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if e.errno in (28, 122):  # ENOSPC, EDQUOT
            raise DiskFull(
                f"disk full while writing {dest}; free some space and try again"
            ) from None
        raise DatmoError(f"cannot write {dest}: {e.strerror or e}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _info(name: str, size: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, int(time.time())
    return info


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    tar.addfile(_info(name, len(data), 0o644), io.BytesIO(data))


def read_meta(path: Path) -> dict[str, Any]:
    """The bundle's first member, its description; DamagedBundle if it has none."""
    try:
        with tarfile.open(path, mode="r|") as tar:
            member = tar.next()
            if (
                member is None
                or member.name != META
                or not member.isreg()
                or member.size > MAX_RECORD
            ):
                raise DamagedBundle(f"{path} is not a datmo bundle (no {META} first)")
            f = tar.extractfile(member)
            assert f is not None
            return _meta(f.read(), path)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DamagedBundle(f"{path} is not a datmo bundle, or is damaged ({e})") from None


def _meta(raw: bytes, path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("project_id"), str):
        raise DamagedBundle(f"{path} is damaged: its {META} is not readable")
    if doc.get("format") != FORMAT:
        raise DatmoError(f"{path} is a bundle of a newer format; upgrade datmo")
    return doc


def read(path: Path, store: ObjectStore, scratch: Path) -> Contents:
    """Everything in the bundle, checked; its objects put in the store. On any problem the
    objects it added are removed again and DamagedBundle says what was wrong."""
    contents: Contents | None = None
    added: list[str] = []
    code = scratch / f"import-{os.getpid()}.bundle"
    try:
        with tarfile.open(path, mode="r|") as tar:
            seen: set[str] = set()
            for member in tar:
                name = member.name
                if name in seen:
                    raise DamagedBundle(f"{path} is damaged: it holds {name} twice")
                seen.add(name)
                if not member.isreg():
                    raise DamagedBundle(
                        f"{path} holds {name!r}, which is not a plain file; refused"
                    )
                f = tar.extractfile(member)
                assert f is not None
                if contents is None:
                    if name != META or member.size > MAX_RECORD:
                        raise DamagedBundle(f"{path} is not a datmo bundle (no {META} first)")
                    contents = Contents(_meta(f.read(), path))
                elif (digest := parse_object_key(name)) is not None:
                    _object(store, f, digest, path, added)
                    contents.objects.add(digest)
                elif name == CODE:
                    with open(code, "wb") as out:
                        while chunk := f.read(CHUNK):
                            out.write(chunk)
                    contents.code = code
                elif (found := parse_record_key(name)) is not None and member.size <= MAX_RECORD:
                    contents.envelopes[found[0]][found[1]] = parse_envelope(
                        name, f.read(), str(path)
                    )
                else:
                    raise DamagedBundle(
                        f"{path} holds {name!r}, which no datmo bundle has; refused"
                    )
        if contents is None:
            raise DamagedBundle(f"{path} is empty")
        contents.added = added
        return contents
    except BaseException as e:
        for digest in added:
            store.delete(digest)
        code.unlink(missing_ok=True)
        if isinstance(e, DamagedRemote | DatmoError):
            if isinstance(e, CorruptStore):
                raise DamagedBundle(f"{path} is damaged: {e}; nothing was imported") from None
            raise
        if isinstance(e, (tarfile.TarError, EOFError)):
            raise DamagedBundle(f"{path} is damaged ({e}); nothing was imported") from None
        if isinstance(e, OSError):
            raise DatmoError(f"cannot read {path}: {e.strerror or e}") from None
        raise


def _object(store: ObjectStore, f: IO[bytes], digest: str, path: Path, added: list[str]) -> None:
    chunks = iter(lambda: f.read(CHUNK), b"")
    if store.has(digest):  # checked all the same: a damaged bundle is refused whole
        h = blake3(max_threads=1)
        for chunk in chunks:
            h.update(chunk)
        if h.hexdigest() != digest:
            raise DamagedBundle(f"{path} is damaged: object {digest[:12]} does not match its hash")
        return
    store.receive(chunks, digest, str(path))
    added.append(digest)
