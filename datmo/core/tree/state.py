"""The state of a tree: what a snapshot holds and what the working tree has now.

Code entries live in the shadow git repo (git blob ids); file entries live in
the object store (blake3 digests). The stat cache lets an unchanged tree be
described without reading a byte: its invariant is that a cached digest's
object exists in the store (status only records entries whose object exists).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datmo.core.storage.statcache import StatCache
from datmo.core.storage.store import Store
from datmo.core.tree.scan import CODE, Entry, ScanResult
from datmo.errors import CorruptStore, DatmoError

if TYPE_CHECKING:
    from datmo.core.util.progress import Progress

MANIFEST_SCHEMA = 1
CODE_LINK_MODE = "120000"
# The stat cache's table for small files stored as files because they are binary: apart
# from "blake3" (files stored for their size or because they are gitignored), so that a
# text file that stops being ignored is read again and becomes code.
BINARY = "binary"

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


Same = Callable[[Signature, Signature], bool]


def compare(
    old: dict[str, Signature], new: dict[str, Signature], same: Same | None = None
) -> Changes:
    """What differs. same: whether two signatures that differ still hold the same content
    (a path stored as code in one state and as a file in the other; see same_content)."""
    changed = (p for p in old.keys() & new.keys() if old[p] != new[p])
    if same is not None:
        changed = (p for p in changed if not same(old[p], new[p]))
    return Changes(
        added=sorted(new.keys() - old.keys()),
        removed=sorted(old.keys() - new.keys()),
        changed=sorted(changed),
    )


def split_changes(
    old: TreeState, new: TreeState, same: Same | None = None
) -> tuple[Changes, Changes]:
    """(code, files): what differs from old to new. A path that is code in one and a file
    in the other (it crossed the size threshold, or git's binary test) is one change,
    listed where it is now, or none when its content and exec bit are the same."""
    a, b = old.signatures(), new.signatures()
    code = compare(
        {p: s for p, s in a.items() if p in old.code}, {p: s for p, s in b.items() if p in new.code}
    )
    files = compare(
        {p: s for p, s in a.items() if p not in old.code},
        {p: s for p, s in b.items() if p not in new.code},
    )
    for now, was in ((code, files), (files, code)):
        crossed = set(now.added) & set(was.removed)
        if crossed:
            now.added = [p for p in now.added if p not in crossed]
            was.removed = [p for p in was.removed if p not in crossed]
            moved = [p for p in crossed if same is None or not same(a[p], b[p])]
            now.changed = sorted([*now.changed, *moved])
    return code, files


def same_content(store: Store) -> Same:
    """Whether a code signature and a file signature hold the same bytes and exec bit.

    Snapshots taken before issue 17 keep small binary files as code; a later state may
    hold the same file in the object store. Such paths are few, so the bytes are read:
    the git blob, hashed with blake3, or else the stored object, hashed as a git blob.
    """

    def same(x: Signature, y: Signature) -> bool:
        if {x[0], y[0]} != {"code", "file"}:
            return False
        (_, mode, sha), (_, digest, exe) = (x, y) if x[0] == "code" else (y, x)
        if mode not in ("100644", "100755") or (mode == "100755") != exe:
            return False
        from datmo.core.storage.hashing import hash_bytes

        if store.git.has_object(sha):
            kind, body = store.git.read_object(sha)
            return kind == "blob" and hash_bytes(body) == digest
        if store.objects.has(digest):
            return _git_blob_id(store.objects.path(digest), store.objects.size(digest)) == sha
        return False

    return same


def _git_blob_id(path: Path, size: int) -> str:
    """The git blob id of a file's bytes, read in chunks (an object may be large)."""
    h = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def file_mode(st: os.stat_result) -> int:
    return 0o755 if st.st_mode & 0o111 else 0o644


def git_mode(st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return CODE_LINK_MODE
    return "100755" if st.st_mode & 0o111 else "100644"


def describe(
    store: Store,
    scan: ScanResult,
    cache: StatCache,
    capture: bool,
    root: Path | None = None,
    progress: Progress | None = None,
) -> TreeState:
    """Hash the scanned tree (default: the project), using the stat cache.

    capture=True stores contents: code in the shadow git repository, files in the
    object store. Small files are code only when git would call them text (reading.py);
    the stat cache keeps that decision: a small file's cached sha1 says it is code, a
    cached digest in its BINARY table that it is a file, so an unchanged tree is
    described again without reading a byte. progress: told of the reads, as they end.
    """
    from datmo.core.tree.reading import CODE as READ_CODE
    from datmo.core.tree.reading import Reader, read_all

    state = TreeState()
    top = os.fspath(root or store.root)
    git, objects = store.git, store.objects
    # The loop runs once per file (100,000 in a big project): most files hit the cache,
    # so what a hit does is kept to a few dictionary and array reads.
    code, files = state.code, state.files
    find_sha1, find_blake3 = cache.finder("sha1"), cache.finder("blake3")
    find_binary = cache.finder(BINARY)
    jobs: list[tuple[Entry, bool]] = []  # (entry, small): to read
    for e in scan.entries:
        st = e.st
        if stat.S_ISLNK(st.st_mode):
            if e.category == CODE:
                code[e.path] = (CODE_LINK_MODE, _link_blob(git, cache, top, e, capture))
            else:
                state.links[e.path] = os.readlink(os.path.join(top, e.path))
            continue
        if e.category == CODE:
            sha = find_sha1(e.path, st)
            if sha is not None:
                code[e.path] = (git_mode(st), sha)
                continue
            digest = find_binary(e.path, st)
        else:
            digest = find_blake3(e.path, st)
        if digest is not None and capture and not objects.has(digest):
            digest = None
        if digest is None:
            jobs.append((e, e.category == CODE))
        else:
            files[e.path] = (digest, st.st_size, file_mode(st))
    if not jobs:
        return state
    if progress is not None:
        progress.start(len(jobs), sum(e.st.st_size for e, _ in jobs))
    for got in read_all(Reader(top, objects, capture), jobs):
        e, st = got.entry, got.entry.st
        if got.kind == READ_CODE:
            if got.data is not None:  # capture: into git, here, on one thread
                sha = _read_guard(e.path, lambda data=got.data: git.write_blob(data))
                cache.record(e.path, st, "sha1", sha, got.started_ns)
            else:  # status only hashes: it must work on a full disk and change nothing
                sha = str(got.key)
                if git.has_object(sha):
                    cache.record(e.path, st, "sha1", sha, got.started_ns)
            code[e.path] = (git_mode(st), sha)
        else:
            digest = str(got.key)
            if capture or objects.has(digest):
                cache.record(
                    e.path, st, "blake3" if e.category != CODE else BINARY, digest, got.started_ns
                )
            files[e.path] = (digest, st.st_size, file_mode(st))
        if progress is not None:
            progress.advance(1, st.st_size)
    if progress is not None:
        progress.done()
    return state


def _link_blob(git: Any, cache: StatCache, top: str, e: Entry, capture: bool) -> str:
    """The blob id of a symlink kept as code (its target), stored when capturing."""
    sha = cache.lookup(e.path, e.st, "sha1")
    if sha is not None:
        return sha
    full = os.path.join(top, e.path)
    started = time.time_ns()
    if capture:
        sha = _read_guard(e.path, lambda: git.write_blob_file(Path(full)))
        cache.record(e.path, e.st, "sha1", sha, started)
    else:
        sha = _read_guard(e.path, lambda: _blob_id(git, full, e.st))
        if git.has_object(sha):
            cache.record(e.path, e.st, "sha1", sha, started)
    return str(sha)


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
    """Upper bound of the bytes a capture would copy into the object store: every
    regular file the stat cache does not vouch for (a small one may be binary)."""
    find_sha1, find_blake3, find_binary = (cache.finder(a) for a in ("sha1", "blake3", BINARY))
    return sum(
        e.st.st_size
        for e in scan.entries
        if stat.S_ISREG(e.st.st_mode)
        and (
            find_blake3(e.path, e.st) is None
            if e.category != CODE
            else find_sha1(e.path, e.st) is None and find_binary(e.path, e.st) is None
        )
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
