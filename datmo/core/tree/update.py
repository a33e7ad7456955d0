"""An incremental capture: redo only the folders that changed since the last capture.

After one file changed among 100,000, a full capture walks and classifies every path,
looks every file up in the stat cache, rebuilds every git tree and gathers every
file's imports again: work that grows with the tree, not with the change. Git keeps
an index and a cache of tree ids for this; datmo keeps the tree stamp (stamp.py: each
folder's names and each file's lstat at the last capture) and, beside it, what that
capture made of each folder (`.datmo/cache/lastcapture`): its code entries and their
blob ids, its stored files, links and left-out paths, the imports of its .py files,
and its git tree's id.

The stamp says which folders changed (`changed_folders`: names listed, or a file's
lstat). Only those are classified again (scan.rescan_folder, with the rules that come
down to them), and only their changed files are read. Every other folder's part is
taken as it was: by the stamp's rule, nothing in it changed (the same trust as an
unchanged re-snapshot's). Trees are rebuilt for the changed folders and the folders
above them; every other tree id is reused.

Anything this cannot judge folder by folder means a full capture: no stamp or a
stale record, a folder added, removed or left out, a rules file (.gitignore,
.datmoignore) changed, a .py symlink, a venv appearing, many folders changed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from datmo.core.storage import cachefile
from datmo.core.storage.project import ProjectContext
from datmo.core.tree import envinfo
from datmo.core.tree.scan import DATMOIGNORE, Entry, Listed, ScanResult, rescan_folder
from datmo.core.tree.stamp import TreeStamp, row
from datmo.core.tree.state import TreeState, describe

_MAGIC = b"DATMOLC\n"
FORMAT_VERSION = 1
# Past this share of the folders, a full capture costs about the same and is simpler.
MAX_CHANGED_SHARE = 0.25

# Per folder: code [(name, mode, sha1)], files [(name, digest, size, mode)],
# links [(name, target)], imports (of its .py files), bytes (sum of entry sizes),
# py [.py names directly in it], tree (its code subtree's id, "" when none).
Part = dict[str, Any]
_PART_KEYS = {"code", "files", "links", "imports", "bytes", "py", "tree"}


class LastCapture:
    """What the last capture made of each folder, in the tree stamp's folder order."""

    def __init__(self, code_id: str, files_id: str, parts: list[Part], skipped: list[list[str]]):
        self.code_id, self.files_id = code_id, files_id
        self.parts = parts
        self.skipped = skipped
        self.stamp = ""  # the digest of the stamp saved with it (see matches)

    def matches(self, stamp: TreeStamp) -> bool:
        """Whether this was saved together with that stamp: two captures at once each
        write both files, and a pair from different captures must never be used."""
        return self.stamp == stamp_digest(stamp)

    @classmethod
    def of(
        cls,
        scan: ScanResult,
        state: TreeState,
        code_id: str,
        files_id: str,
        trees: dict[str, str],
        imports: dict[str, list[str]],
        skipped: list[list[str]],
    ) -> LastCapture:
        parts = [_part(rel, entries, state, trees, imports) for rel, _, _, entries in scan.folders]
        return cls(code_id, files_id, parts, skipped)

    def save(self, path: Path, owner: Any) -> None:
        data = (self.code_id, self.files_id, self.parts, self.skipped, self.stamp)
        cachefile.write(path, _MAGIC, FORMAT_VERSION, data, owner)

    @classmethod
    def load(cls, path: Path) -> LastCapture | None:
        data = cachefile.read(path, _MAGIC, FORMAT_VERSION)
        try:
            code_id, files_id, parts, skipped, digest = data
        except (TypeError, ValueError):
            return None  # missing, damaged, or written by another version
        # The crc in cachefile catches damage; this, a record of another shape.
        if not isinstance(parts, list) or not all(
            isinstance(p, dict) and p.keys() >= _PART_KEYS for p in parts
        ):
            return None
        last = cls(code_id, files_id, parts, skipped)
        last.stamp = digest
        return last


def _part(
    rel: str,
    entries: list[Entry],
    state: TreeState,
    trees: dict[str, str],
    imports: dict[str, list[str]],
) -> Part:
    code: list[tuple[str, ...]] = []
    files: list[tuple[Any, ...]] = []
    links: list[tuple[str, str]] = []
    found: set[str] = set()
    py: list[str] = []
    for e in entries:
        name = e.path.rpartition("/")[2]
        if e.path in state.code:
            code.append((name, *state.code[e.path]))
        elif e.path in state.files:
            files.append((name, *state.files[e.path]))
        elif e.path in state.links:
            links.append((name, state.links[e.path]))
        if name.endswith(".py") and stat.S_ISREG(e.st.st_mode):
            py.append(name)
            found.update(imports.get(e.path, ()))
    return {
        "code": code,
        "files": files,
        "links": links,
        "imports": sorted(found),
        "bytes": sum(e.st.st_size for e in entries),
        "py": py,
        "tree": trees.get(rel, ""),
    }


class Known:
    """Stands in for the stat cache while the changed folders are described: a file whose
    lstat is the stamp's keeps the id the last capture gave it."""

    def __init__(self, ids: dict[str, tuple[str, str, tuple[int, ...]]]) -> None:
        self.ids = ids  # path -> (algo, digest, lstat fields)

    def finder(self, algo: str) -> Any:
        # A stored file's digest is a blake3 whether it was stored for its size, for being
        # gitignored or for being binary (the stat cache's "blake3" and "binary" tables).
        kind = "sha1" if algo == "sha1" else "blake3"

        def find(path: str, st: os.stat_result) -> str | None:
            known = self.ids.get(path)
            if known is None or known[0] != kind or known[2] != row(st):
                return None
            return known[1]

        return find

    def lookup(self, path: str, st: os.stat_result, algo: str) -> str | None:
        found: str | None = self.finder(algo)(path, st)
        return found

    def record(self, *args: Any) -> None:
        pass  # the full capture's stat cache is left as it is: it only misses more


class Update:
    """The result of an incremental capture, for capture.py to store and stamp."""

    def __init__(
        self,
        state: TreeState,
        last: LastCapture,
        replaced: dict[int, Listed],
        total_bytes: int,
    ) -> None:
        self.state, self.last, self.replaced, self.total_bytes = state, last, replaced, total_bytes


def update(
    ctx: ProjectContext, stamp: TreeStamp, changed: list[int], last: LastCapture
) -> Update | None:
    """Capture only the changed folders; None where a full capture must look."""
    folders = stamp.folders
    if len(changed) > max(8, MAX_CHANGED_SHARE * len(folders)):
        return None
    if not last.matches(stamp):
        return None  # not written by the capture that wrote the stamp
    if len(last.parts) != len(folders):
        return None
    root = ctx.root
    children: dict[str, set[str]] = {}
    for rel in [*folders, *stamp.venvs]:  # a venv is walked into, then left out
        if rel:
            parent, _, name = rel.rpartition("/")
            children.setdefault(parent, set()).add(name)
    starts, i = [], 0
    for names in stamp.names:
        starts.append(i)
        i += len(names)
    parts = list(last.parts)
    replaced: dict[int, Listed] = {}
    skipped_now: list[list[str]] = []
    redone: set[str] = set()
    for k in changed:
        rel = folders[k]
        found = rescan_folder(root, rel, ctx.info.file_threshold)
        if found is None:
            return None
        listed, skipped, subs = found
        if set(subs) != children.get(rel, set()):
            return None  # a folder came, went, or is left out now
        old = _old_rows(stamp, k, starts[k])
        for rules_file in (".gitignore", DATMOIGNORE) if rel == "" else (".gitignore",):
            if _row_now(root, rel, rules_file) != old.get(rules_file):
                return None  # the rules changed: other folders may be judged differently
        entries = listed[3]
        parts[k] = _redo(ctx, rel, entries, parts[k], old)
        replaced[k] = listed
        redone.add(rel)
        skipped_now += [[s.path, s.reason] for s in skipped]
    # Left-out paths: the changed folders' own, anew; a virtual environment is reported
    # by the walk into it, not by its parent, and stamp.changed_folders checked it.
    kept = [
        s
        for s in last.skipped
        if s[1] == "virtual environment" or s[0].rpartition("/")[0] not in redone
    ]
    skipped_all = sorted(kept + skipped_now)
    _rebuild_trees(ctx, folders, parts, redone)
    state = TreeState()
    for rel, part in zip(folders, parts, strict=True):
        prefix = rel + "/" if rel else ""
        state.code.update((prefix + n, (m, s)) for n, m, s in part["code"])
        state.files.update((prefix + n, (d, z, m)) for n, d, z, m in part["files"])
        state.links.update((prefix + n, t) for n, t in part["links"])
    code_id = parts[folders.index("")]["tree"] if "" in folders else ""
    if not code_id:
        code_id = ctx.store.git.write_tree({})
    ctx.store.git.sync()
    new_last = LastCapture(code_id, "", parts, skipped_all)
    total = sum(part["bytes"] for part in parts)
    return Update(state, new_last, replaced, total)


def stamp_digest(stamp: TreeStamp) -> str:
    """What a stamp saw and made, in one digest (a few ms for 100,000 names)."""
    from blake3 import blake3

    h = blake3()
    for col in stamp.cols:
        h.update(col.tobytes())
    h.update("\0".join(stamp.folders).encode("utf-8", "surrogateescape"))
    for names in stamp.names:
        h.update("\0".join(names).encode("utf-8", "surrogateescape") + b"\1")
    o = stamp.outcome
    h.update(f"{o.code_id} {o.files_id} {o.content_key} {stamp.key}".encode())
    return str(h.hexdigest())


def _old_rows(stamp: TreeStamp, k: int, start: int) -> dict[str, tuple[int, ...]]:
    """The stamp's rows of folder k, by name (mode, size, mtime, ctime, inode)."""
    names = stamp.names[k]
    cols = [c[start : start + len(names)] for c in stamp.cols]
    return {n: tuple(col[j] for col in cols) for j, n in enumerate(names)}


def _row_now(root: Path, rel: str, name: str) -> tuple[int, ...] | None:
    try:
        st = os.lstat(os.path.join(root, rel, name))
    except FileNotFoundError:
        return None
    return row(st)


def _redo(
    ctx: ProjectContext,
    rel: str,
    entries: list[Entry],
    old_part: Part,
    old_rows: dict[str, tuple[int, ...]],
) -> Part:
    """A changed folder's part: unchanged files keep their ids, the rest are stored."""
    prefix = rel + "/" if rel else ""
    ids: dict[str, tuple[str, str, tuple[int, ...]]] = {}
    for name, _, sha in old_part["code"]:
        if name in old_rows:
            ids[prefix + name] = ("sha1", sha, old_rows[name])
    for name, digest, _, _ in old_part["files"]:
        if name in old_rows:
            ids[prefix + name] = ("blake3", digest, old_rows[name])
    mini = ScanResult(entries, [])
    state = describe(ctx.store, mini, Known(ids), capture=True)  # type: ignore[arg-type]
    # The imports of its .py files: every file parsed again, a folder's worth at most.
    imports: dict[str, list[str]] = {}
    for e in entries:
        if e.path.endswith(".py") and stat.S_ISREG(e.st.st_mode):
            try:
                with open(os.path.join(ctx.root, e.path), "rb") as f:
                    imports[e.path] = sorted(envinfo.imports_of(f.read()))
            except OSError:
                imports[e.path] = []
    part = _part(rel, entries, state, {}, imports)
    return part


def _rebuild_trees(
    ctx: ProjectContext, folders: list[str], parts: list[Part], redone: set[str]
) -> None:
    """New tree ids for the changed folders and every folder above them, deepest first."""
    dirty: set[str] = set()
    for rel in redone:
        while True:
            dirty.add(rel)
            if not rel:
                break
            rel = rel.rpartition("/")[0]
    index = {rel: k for k, rel in enumerate(folders)}
    subtrees: dict[str, list[tuple[str, str]]] = {}
    for rel in folders:
        if rel:
            parent, _, name = rel.rpartition("/")
            subtrees.setdefault(parent, []).append((name, rel))
    write = ctx.store.git.write_tree_object
    for rel in sorted(dirty, key=lambda d: d.count("/") if d else -1, reverse=True):
        part = parts[index[rel]]
        listing = [(os.fsencode(n), mode, sha) for n, mode, sha in part["code"]]
        for name, sub in subtrees.get(rel, ()):
            tree = parts[index[sub]]["tree"]
            if tree:
                listing.append((os.fsencode(name) + b"/", "40000", tree))
        listing.sort()
        if not listing and rel:
            tree = ""  # git has no empty folders: it leaves the parent's listing
        else:
            tree = write(
                b"".join(
                    mode.encode() + b" " + n.rstrip(b"/") + b"\0" + bytes.fromhex(sha)
                    for n, mode, sha in listing
                )
            )
        parts[index[rel]] = {**part, "tree": tree}


def module_names(folders: list[str], parts: list[Part]) -> tuple[set[str], set[str]]:
    """envinfo.local_module_names from the folders' .py names, without every path."""
    top: set[str] = set()
    nested: set[str] = set()
    for rel, part in zip(folders, parts, strict=True):
        if not part["py"]:
            continue
        stems = [n.removesuffix(".py") for n in part["py"]]
        if rel:
            dirs = rel.split("/")
            top.add(dirs[0])
            nested.update(dirs[1:])
            nested.update(stems)
        else:
            top.update(stems)
    nested.discard("__init__")
    return top, nested - top
