"""A remote in a folder: a local disk, a mounted NFS share.

Objects are copied in parallel threads (a clone where the filesystem has them), each into
tmp/ under a temporary name, hashed from the bytes written, fsynced and renamed into
objects/; then records the same way. The code history is a bare git repository in git/.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datmo.core.remote import gitcode
from datmo.core.remote.layout import (
    KINDS,
    META,
    RECORD_ID,
    DamagedRemote,
    Item,
    Progress,
    RemoteError,
    meta_bytes,
    object_key,
    parallel,
    parse_meta,
    parse_object_key,
)
from datmo.core.storage.fsutil import fsync_dir, mkstemp
from datmo.core.storage.hashing import _copy_hashing, _reraise, hash_file, reflink
from datmo.errors import CorruptStore, DatmoError, DiskFull

if TYPE_CHECKING:
    from datmo.core.remote.url import RemoteURL
    from datmo.core.shadowgit.repo import ShadowRepo
    from datmo.core.storage.objects import ObjectStore

LAYOUT = ("objects", "tmp", "records", "git")  # what `create` makes before datmo-remote.json
WORKERS = 8  # copies in flight: enough to hide fsync and NFS round trips
STALE_TMP_S = 3600.0  # a temp file this old was left by a killed push


class FolderTransport:
    def __init__(self, url: RemoteURL) -> None:
        self.root = Path(url.path)
        self.label = url.text

    # -- the remote itself ----------------------------------------------------------
    def _err(self, e: OSError, doing: str) -> DatmoError:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            return DiskFull(
                f"the remote {self.label} is full ({e.strerror} while {doing}); free space "
                "there and push again: the remote is unchanged where it was not written"
            )
        return RemoteError(f"cannot use the remote {self.label} ({doing}): {e.strerror or e}")

    def read_meta(self) -> dict[str, Any] | None:
        try:
            raw = (self.root / META).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise self._err(e, f"reading {META}") from None
        return parse_meta(raw, self.label)

    def create(self, meta: dict[str, Any]) -> dict[str, Any]:
        found = self.read_meta()
        if found is not None:
            return found
        try:
            # Only our own folders (a first push killed before its meta) may be there.
            if self.root.exists() and set(os.listdir(self.root)) - set(LAYOUT):
                # Another first push of the same project may have just made it.
                found = self.read_meta()
                if found is not None:
                    return found
                raise RemoteError(
                    f"{self.label} is not empty and holds no datmo remote; give an empty or "
                    "new folder"
                )
            for sub in ("objects", "tmp", *(f"records/{k}" for k in KINDS)):
                os.makedirs(self.root / sub, exist_ok=True)
            gitcode.init_bare(self.root / "git")
            fd, tmp = mkstemp(self.root / "tmp", prefix="meta-")
            with os.fdopen(fd, "wb") as f:
                f.write(meta_bytes(meta))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, self.root / META)  # never replaces one made meanwhile
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
            fsync_dir(self.root)
        except OSError as e:
            raise self._err(e, "making it") from None
        made = self.read_meta()
        assert made is not None
        return made

    def record_ids(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for kind in KINDS:
            try:
                names = os.listdir(self.root / "records" / kind)
            except FileNotFoundError:
                names = []
            except OSError as e:
                raise self._err(e, "listing records") from None
            out[kind] = {n[:-5] for n in names if n.endswith(".json") and RECORD_ID.match(n[:-5])}
        return out

    def read_records(self, keys: list[str]) -> dict[str, bytes]:
        out = {}
        for key in keys:
            try:
                out[key] = (self.root / key).read_bytes()
            except FileNotFoundError:
                continue
            except OSError as e:
                raise self._err(e, f"reading {key}") from None
        return out

    def missing_objects(self, digests: Iterable[str]) -> set[str]:
        return {d for d in digests if not (self.root / object_key(d)).is_file()}

    # -- sending ----------------------------------------------------------------------
    def send(
        self, objects: list[Item], records: list[tuple[str, bytes]], progress: Progress
    ) -> None:
        tmp = self.root / "tmp"
        try:
            os.makedirs(tmp, exist_ok=True)
            _clean_stale(tmp)
        except OSError as e:
            raise self._err(e, "preparing tmp/") from None
        folders: set[Path] = set()
        parallel(lambda item: folders.add(self._put(item)), objects, WORKERS)
        try:
            for folder in sorted(folders):
                fsync_dir(folder)  # the new names, before any record can name them
            for kind in KINDS:
                mine = [(k, d) for k, d in records if k.startswith(f"records/{kind}/")]
                for key, data in mine:
                    self._write(key, data)
                if mine:
                    fsync_dir(self.root / "records" / kind)  # before the next kind's records
        except OSError as e:
            raise self._err(e, "writing records") from None

    def _put(self, item: Item) -> Path:
        final = self.root / object_key(item.digest)
        if final.is_file():
            return final.parent
        try:
            sfd = os.open(item.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise CorruptStore(f"cannot read {item.path}: {e.strerror}; run 'datmo fsck'") from None
        try:
            fd, tmp = mkstemp(self.root / "tmp", prefix="put-")
        except OSError as e:
            os.close(sfd)
            raise self._err(e, "writing an object") from None
        try:
            try:
                if reflink(sfd, fd):
                    got, _ = _copy_hashing(fd, None, _reraise, _reraise, item.size)
                else:
                    got, _ = _copy_hashing(sfd, fd, _reraise, _reraise, item.size)
                if got != item.digest:
                    raise CorruptStore(
                        f"{item.path} does not match its hash {item.digest[:12]}; nothing of it "
                        "was sent; run 'datmo fsck'"
                    )
                os.fsync(fd)
                os.fchmod(fd, 0o444)
                os.makedirs(final.parent, exist_ok=True)
                os.replace(tmp, final)
            except OSError as e:
                raise self._err(e, f"writing object {item.digest[:12]}") from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        finally:
            os.close(fd)
            os.close(sfd)
        return final.parent

    def _write(self, key: str, data: bytes) -> None:
        final = self.root / key
        fd, tmp = mkstemp(self.root / "tmp", prefix="rec-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.makedirs(final.parent, exist_ok=True)
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # -- fetching ---------------------------------------------------------------------
    def fetch_objects(self, digests: list[str], into: ObjectStore, progress: Progress) -> None:
        def get(digest: str) -> None:
            src = self.root / object_key(digest)
            if not src.is_file():
                raise DamagedRemote(
                    f"object {digest[:12]} is missing from {self.label}; run 'datmo fsck --remote'"
                )
            into.put_file(src, expect=digest)

        parallel(get, digests, WORKERS)

    # -- code -------------------------------------------------------------------------
    def push_code(
        self, git: ShadowRepo, refs: dict[str, str], scratch: Path
    ) -> tuple[list[Item], str | None]:
        if refs:
            gitcode.init_bare(self.root / "git")
            locks = self.root / "git" / gitcode.SNAPSHOT_REFS
            unlock = lambda: gitcode.stale_locks(locks)  # noqa: E731
            gitcode.push(git, str(self.root / "git"), refs, self.label, unlock=unlock)
        return [], None

    def fetch_code(
        self, git: ShadowRepo, wants: dict[str, tuple[str, str | None]], scratch: Path
    ) -> None:
        gitcode.fetch(git, str(self.root / "git"), wants, self.label)

    # -- checking ---------------------------------------------------------------------
    def object_hashes(self) -> Iterator[tuple[str, str | None]]:
        top = self.root / "objects"
        for folder in sorted(top.iterdir()) if top.is_dir() else []:
            for f in sorted(folder.iterdir()) if folder.is_dir() else []:
                digest = parse_object_key(f"objects/{folder.name}/{f.name}")
                if digest is None:
                    continue
                try:
                    yield digest, hash_file(f)
                except OSError:
                    yield digest, None

    def code_problems(self, wants: dict[str, tuple[str, str | None]]) -> list[str]:
        return gitcode.bare_problems(self.root / "git", wants, self.label)

    def close(self) -> None:
        pass


def _clean_stale(tmp: Path) -> None:
    limit = time.time() - STALE_TMP_S
    for e in os.scandir(tmp):
        with contextlib.suppress(OSError):
            if e.is_file(follow_symlinks=False) and e.stat(follow_symlinks=False).st_mtime < limit:
                os.unlink(e.path)
