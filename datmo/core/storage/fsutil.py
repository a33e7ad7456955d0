"""Small filesystem primitives shared by everything that writes.

Two promises live here: writes are atomic (temp file in the same folder,
fsync, rename), and when datmo runs as root inside a project owned by another
user, every file it creates is handed to that owner.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator
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
    later = pending() if durable else None
    if later is not None:
        durable = False
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
    if later is not None:
        later.add([os.fspath(path)])
    elif durable:
        fsync_dir(path.parent)


def make_durable(files: Iterable[str], folders: Iterable[str]) -> None:
    """Make files written without fsync durable, with the names they were given in
    folders: one syncfs per filesystem they are on where Linux has it (it writes every
    dirty page and inode, names included), else an fsync of each file, then folder."""
    files = list(files)
    folders = {*folders, *(os.path.dirname(f) for f in files)}
    if not files:
        return
    one_per_device: dict[int, str] = {}
    for d in sorted(folders, key=len, reverse=True):  # the top folder of each device wins
        with contextlib.suppress(FileNotFoundError):
            one_per_device[os.stat(d).st_dev] = d
    if all(syncfs(d) for d in one_per_device.values()):
        return
    for path in files:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:  # removed since (a replaced record): nothing to keep
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for folder in sorted(folders, key=len, reverse=True):  # a/b before a/
        with contextlib.suppress(FileNotFoundError):
            fsync_dir(Path(folder))


class Deferred:
    """Files written in a deferred() block, made durable together at its end."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self.folders: set[str] = set()

    def add(self, files: Iterable[str], folders: Iterable[str] = ()) -> None:
        self.files.extend(files)
        self.folders.update(folders)


_local = threading.local()


def pending() -> Deferred | None:
    """The deferred() block this thread is in, if any: writers that fsync by hand add
    their files to it instead."""
    return getattr(_local, "deferred", None)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Durable writes in this thread (atomic_write_bytes, the shadow repo's objects and
    refs) skip their own fsyncs; at the block's end, even a failed one, all of them are
    made durable at once (make_durable). What a record names must be durable before the
    record is: write the two in consecutive blocks, not in one. An inner block joins the
    outer one. A Ctrl-C or kill loses nothing here (the page cache survives the process);
    only a machine crash inside the block can, and then no record of it was announced."""
    if pending() is not None:
        yield
        return
    later = _local.deferred = Deferred()
    try:
        yield
    except BaseException:
        _local.deferred = None
        with contextlib.suppress(OSError):  # the error that ended the block comes first
            make_durable(later.files, later.folders)
        raise
    _local.deferred = None
    make_durable(later.files, later.folders)
