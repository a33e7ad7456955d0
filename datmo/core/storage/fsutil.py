"""Small filesystem primitives shared by everything that writes.

Two promises live here: writes are atomic (temp file in the same folder,
fsync, rename), and when datmo runs as root inside a project owned by another
user, every file it creates is handed to that owner.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Owner:
    """The uid:gid that should own what datmo creates; None fields mean 'leave as is'."""

    uid: int
    gid: int

    @classmethod
    def of(cls, path: Path) -> Owner | None:
        """The owner to hand files to, or None when no chown is needed or possible."""
        st = os.stat(path)
        if os.geteuid() != 0 or (st.st_uid == 0 and st.st_gid == 0):
            return None
        return cls(st.st_uid, st.st_gid)


def mkstemp(folder: Path | str, prefix: str = "tmp", suffix: str = "") -> tuple[int, str]:
    """tempfile.mkstemp without its import cost (it pulls in shutil and random)."""
    for _ in range(100):
        path = os.path.join(folder, f"{prefix}{os.urandom(6).hex()}{suffix}")
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {folder}")


def chown(path: Path | str, owner: Owner | None) -> None:
    if owner is not None:
        os.chown(path, owner.uid, owner.gid, follow_symlinks=False)


def makedirs(path: Path, owner: Owner | None, mode: int = 0o777) -> None:
    """mkdir -p that chowns every folder it creates (not the ones that existed)."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(d, mode)
            chown(d, owner)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def temp_file(folder: Path | str, prefix: str, owner: Owner | None) -> Iterator[tuple[int, str]]:
    """A new temp file (fd, path); closes fd, and removes the file if the block fails."""
    fd, tmp = mkstemp(folder, prefix=prefix)
    try:
        try:
            chown(tmp, owner)
            yield fd, tmp
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def syncfs(path: Path | str) -> bool:
    """Flush the whole filesystem holding path (Linux syncfs(2), which Python's os lacks):
    one call in place of an fsync per file. False where there is no syncfs."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return False
    fn = getattr(libc, "syncfs", None)
    if fn is None:
        return False
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if fn(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), os.fspath(path))
    finally:
        os.close(fd)
    return True


def atomic_write_bytes(
    path: Path,
    data: bytes,
    owner: Owner | None,
    mode: int = 0o644,
    durable: bool = True,
    prefix: str | None = None,
) -> None:
    """Write data to path so that readers see the old file or the new one, never a mix.

    durable=False skips the fsyncs for caches that may be lost without harm.
    """
    fd, tmp = mkstemp(path.parent, prefix=prefix or f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        chown(tmp, owner)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)
