"""The one owner of `.datmo`: paths, the project lock, and JSON entity records.

Records are one human-readable JSON file each, written atomically, so a
reader never sees half a record and a killed writer leaves the old one.
Writers hold an flock on `.datmo/lock`; the kernel drops it when the holder
dies, so a killed datmo never blocks the next command.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datmo.core.storage.fsutil import Owner, atomic_write_bytes, makedirs
from datmo.core.util.probe import DATMO_DIR
from datmo.errors import AmbiguousId, CorruptStore, DatmoError, LockTimeout, NotFound

if TYPE_CHECKING:
    from datmo.core.shadowgit.repo import ShadowRepo
    from datmo.core.storage.objects import ObjectStore

MIN_PREFIX = 4
FULL_ID = 40  # hex characters of an id (entity.base.new_id)
LOCK_TIMEOUT_S = 120.0
# flock() errors that mean "this filesystem has no locks", not "someone holds it".
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
KINDS = ("snapshots", "environments", "runs", "sweeps")
LISTING = {
    "snapshots": "datmo snapshot ls --all",
    "runs": "datmo ls",
    "environments": "datmo environment ls",
    "sweeps": "datmo sweep ls",
}


class Store:
    """Everything under PROJECT/.datmo. Nothing else in datmo touches that folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / DATMO_DIR
        self._held = threading.local()  # how deep this thread is in lock()
        # False on a cluster's compute node: SQLite's WAL does not work across hosts on a
        # network filesystem, so records are written and the index is refreshed where read.
        self.index_writes = True

    @cached_property
    def owner(self) -> Owner | None:
        return Owner.of(self.root)

    # -- layout -----------------------------------------------------------------
    def exists(self) -> bool:
        return (self.dir / "project.json").is_file()

    def create_layout(self) -> None:
        for sub in ("", *KINDS, "cache", "journal", "tmp", "work", "objects", "run-data", "home"):
            makedirs(self.dir / sub, self.owner)

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    @cached_property
    def objects(self) -> ObjectStore:
        from datmo.core.storage.objects import ObjectStore

        return ObjectStore(self.dir / "objects", self.owner)

    @cached_property
    def git(self) -> ShadowRepo:
        from datmo.core.shadowgit.repo import ShadowRepo

        return ShadowRepo(self.dir / "git", self.root, self.owner)

    # -- locking ----------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
        """Exclusive project lock for writers; re-entrant within one thread (another
        thread of the process waits for it, as another process does)."""
        depth = getattr(self._held, "depth", 0)
        if depth:
            self._held.depth = depth + 1
            try:
                yield
            finally:
                self._held.depth = depth
            return
        path = self.dir / "lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if self.owner:
                os.fchown(fd, self.owner.uid, self.owner.gid)
            deadline = time.monotonic() + timeout
            delay = 0.001
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno in _NO_LOCKS:
                        raise DatmoError(
                            f"the filesystem of {self.dir} refuses file locks ({e.strerror}); "
                            "datmo needs them (Lustre: mount with -o flock; NFS: run lockd, "
                            "or NFSv4)"
                        ) from None
                    if e.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() > deadline:
                        raise LockTimeout(
                            f"another datmo process has held {path} for over {timeout:.0f}s; "
                            "wait for it to finish and try again"
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)
            self._held.depth = 1
            try:
                yield
            finally:
                self._held.depth = 0
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # -- JSON records -----------------------------------------------------------
    def read_json(self, rel: str) -> Any:
        try:
            with open(os.path.join(self.dir, rel), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise NotFound(f"missing record {DATMO_DIR}/{rel}") from None
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise CorruptStore(
                f"{DATMO_DIR}/{rel} is damaged ({e.__class__.__name__}); run 'datmo fsck --repair'"
            ) from None

    def write_json(self, rel: str, doc: Any) -> None:
        try:
            data = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise DatmoError(f"cannot store {rel}: {e}") from None
        data += "\n"
        path = self.dir / rel
        makedirs(path.parent, self.owner)
        atomic_write_bytes(path, data.encode(), self.owner)

    def remove(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.dir / rel)

    # -- entities ---------------------------------------------------------------
    def entity_path(self, kind: str, entity_id: str) -> str:
        return f"{kind}/{entity_id}.json"

    def read_entity(self, kind: str, entity_id: str) -> dict[str, Any]:
        doc = self.read_json(self.entity_path(kind, entity_id))
        if not isinstance(doc, dict) or doc.get("id") != entity_id:
            raise CorruptStore(
                f"{DATMO_DIR}/{kind}/{entity_id}.json does not hold a valid record; "
                "run 'datmo fsck --repair'"
            )
        return doc

    def write_entity(self, kind: str, doc: dict[str, Any]) -> None:
        self.write_json(self.entity_path(kind, doc["id"]), doc)

    def delete_entity(self, kind: str, entity_id: str) -> None:
        self.remove(self.entity_path(kind, entity_id))

    def list_ids(self, kind: str) -> list[str]:
        try:
            names = os.listdir(self.dir / kind)
        except FileNotFoundError:
            return []
        return [n[:-5] for n in names if n.endswith(".json") and not n.startswith(".")]

    def resolve(self, kind: str, prefix: str) -> str:
        """Full id for a unique prefix of at least MIN_PREFIX characters, as git does."""
        label = kind.rstrip("s")
        listing = LISTING.get(kind, f"datmo {label} ls")
        p = prefix.strip().lower()
        if len(p) < MIN_PREFIX or not all(c in "0123456789abcdef" for c in p):
            raise DatmoError(
                f"'{prefix}' is not a {label} id; give at least {MIN_PREFIX} hex characters "
                f"(see '{listing}')"
            )
        if len(p) == FULL_ID and os.path.exists(self.dir / self.entity_path(kind, p)):
            return p  # a whole id: no listing of every record (the dashboard sends them)
        matches = [i for i in self.list_ids(kind) if i.startswith(p)]
        if not matches:
            raise NotFound(f"no {label} with id '{prefix}'; see '{listing}'")
        if len(matches) > 1:
            raise AmbiguousId(label, prefix, matches)
        return matches[0]

    # -- pointers ---------------------------------------------------------------
    def read_pointer(self, name: str) -> str | None:
        try:
            doc = self.read_json(name)
        except NotFound:
            return None
        value = doc.get("id") if isinstance(doc, dict) else None
        return value if isinstance(value, str) else None

    def write_pointer(self, name: str, value: str | None) -> None:
        if value is None:
            self.remove(name)
        else:
            self.write_json(name, {"id": value})
