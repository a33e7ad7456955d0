"""The state of a tree: what a snapshot holds and what the working tree has now.

Code entries live in the shadow git repo (git blob ids); file entries live in
the object store (blake3 digests). The stat cache lets an unchanged tree be
described without reading a byte: its invariant is that a cached digest's
object exists in the store (status only records entries whose object exists).
"""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datmo.core.storage.statcache import StatCache
from datmo.core.storage.store import Store
from datmo.core.tree.scan import CODE, ScanResult
from datmo.errors import CorruptStore, DatmoError

MANIFEST_SCHEMA = 1
CODE_LINK_MODE = "120000"

# path -> signature; signatures compare equal exactly when the content is the same
Signature = tuple[Any, ...]


@dataclass
class TreeState:
    code: dict[str, tuple[str, str]] = field(default_factory=dict)  # path -> (git mode, sha1)
    files: dict[str, tuple[str, int, int]] = field(
        default_factory=dict
    )  # path -> (digest, size, mode)
    links: dict[str, str] = field(default_factory=dict)  # ignored symlinks: path -> target
    extra: dict[str, tuple[str, int, int]] = field(
        default_factory=dict
    )  # --paths, outside the tree

    def signatures(self) -> dict[str, Signature]:
        out: dict[str, Signature] = {p: ("code", m, s) for p, (m, s) in self.code.items()}
        out.update((p, ("file", d, m & 0o111 != 0)) for p, (d, _, m) in self.files.items())
        out.update((p, ("link", t)) for p, t in self.links.items())
        return out

    def manifest_bytes(self) -> bytes:
        doc = {
            "schema_version": MANIFEST_SCHEMA,
            "files": {p: list(v) for p, v in self.files.items()},
            "links": self.links,
            "extra": {p: list(v) for p, v in self.extra.items()},
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class Changes:
    added: list[str]
    removed: list[str]
    changed: list[str]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def count(self) -> int:
        return len(self.added) + len(self.removed) + len(self.changed)


def compare(old: dict[str, Signature], new: dict[str, Signature]) -> Changes:
    return Changes(
        added=sorted(new.keys() - old.keys()),
        removed=sorted(old.keys() - new.keys()),
        changed=sorted(p for p in old.keys() & new.keys() if old[p] != new[p]),
    )


def file_mode(st: os.stat_result) -> int:
    return 0o755 if st.st_mode & 0o111 else 0o644


def git_mode(st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return CODE_LINK_MODE
    return "100755" if st.st_mode & 0o111 else "100644"


def describe(
    store: Store, scan: ScanResult, cache: StatCache, capture: bool, root: Path | None = None
) -> TreeState:
    """Hash the scanned tree (default: the project), using the stat cache.

    capture=True stores file contents in the object store.
    """
    state = TreeState()
    top = os.fspath(root or store.root)
    git, objects = store.git, store.objects
    # The loop runs once per file (100,000 in a big project): most files hit the cache,
    # so what a hit does is kept to a few dictionary and array reads.
    code, find_sha1, find_blake3 = state.code, cache.finder("sha1"), cache.finder("blake3")
    for e in scan.entries:
        if e.category == CODE:
            sha = find_sha1(e.path, e.st)
            if sha is None:
                full = os.path.join(top, e.path)
                started = time.time_ns()
                if capture:
                    sha = _read_guard(e.path, lambda full=full: git.write_blob_file(full))
                    cache.record(e.path, e.st, "sha1", sha, started)
                else:  # status only hashes: it must work on a full disk and change nothing
                    sha = _read_guard(e.path, lambda full=full, st=e.st: _blob_id(git, full, st))
                    if git.has_object(sha):
                        cache.record(e.path, e.st, "sha1", sha, started)
            code[e.path] = (git_mode(e.st), sha)
        elif stat.S_ISLNK(e.st.st_mode):
            state.links[e.path] = os.readlink(os.path.join(top, e.path))
        else:
            digest = find_blake3(e.path, e.st)
            if digest is not None and capture and not objects.has(digest):
                digest = None
            if digest is None:
                full = os.path.join(top, e.path)
                started = time.time_ns()
                if capture:
                    digest, _ = _read_guard(e.path, lambda full=full: objects.put_file(Path(full)))
                    cache.record(e.path, e.st, "blake3", digest, started)
                else:
                    from datmo.core.storage.hashing import hash_file

                    digest = _read_guard(e.path, lambda full=full: hash_file(Path(full)))
                    if objects.has(digest):
                        cache.record(e.path, e.st, "blake3", digest, started)
            state.files[e.path] = (digest, e.st.st_size, file_mode(e.st))
    return state


def _blob_id(git: Any, full: str, st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return str(git.blob_id(os.fsencode(os.readlink(full))))
    fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        return str(git.blob_id(f.read()))


def _read_guard(path: str, fn: Any) -> Any:
    try:
        return fn()
    except FileNotFoundError:
        raise DatmoError(f"'{path}' vanished while it was being read; try again") from None
    except PermissionError:
        raise DatmoError(
            f"cannot read '{path}': permission denied; "
            "fix its permissions or add it to .datmoignore"
        ) from None


def bytes_to_store(store: Store, scan: ScanResult, cache: StatCache) -> int:
    """Upper bound of the bytes a capture would copy into the object store."""
    return sum(
        e.st.st_size
        for e in scan.entries
        if e.category != CODE
        and stat.S_ISREG(e.st.st_mode)
        and cache.lookup(e.path, e.st, "blake3") is None
    )


def load(store: Store, code_id: str, files_id: str) -> TreeState:
    """The state a snapshot recorded."""
    state = TreeState(code=store.git.read_tree(code_id))
    try:
        doc = json.loads(store.objects.read_bytes(files_id))
        state.files = {p: (v[0], int(v[1]), int(v[2])) for p, v in doc["files"].items()}
        state.links = dict(doc.get("links", {}))
        state.extra = {p: (v[0], int(v[1]), int(v[2])) for p, v in doc.get("extra", {}).items()}
    except (ValueError, KeyError, TypeError, IndexError):
        raise CorruptStore(f"file manifest {files_id[:12]} is damaged; run 'datmo fsck'") from None
    return state
