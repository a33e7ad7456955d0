"""Git's object formats, as bytes: hashing, trees, commits and pack indexes.

Pure functions with no file or process I/O; datmo.core.shadowgit.repo stores and reads what they
build and parse.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

FILE_MODES = {"100644", "100755", "120000"}
KINDS = {b"blob", b"tree", b"commit", b"tag"}
_PACK_IDX_V2 = b"\xfftOc\x00\x00\x00\x02"


def sha1(data: bytes = b"") -> Any:
    import hashlib  # ~5 ms to load (OpenSSL); an unchanged re-snapshot hashes nothing

    return hashlib.sha1(data)


def header(kind: bytes, size: int) -> bytes:
    return b"%s %d\0" % (kind, size)


def object_id(kind: bytes, body: bytes) -> str:
    h = sha1(header(kind, len(body)))
    h.update(body)
    return str(h.hexdigest())


def bad_name(name: str) -> bool:
    return name in ("", ".", "..") or name.lower() == ".git"


def build_trees(
    entries: Mapping[str, tuple[str, str]],
    write: Callable[[bytes, bytes], str],
    ids: dict[str, str] | None = None,
) -> str:
    """Write (through write(kind, body) -> id) the nested trees for relpath -> (mode, blob
    id), deepest first; returns the root tree's id. Raises ValueError for a bad entry.
    ids, if given, gets each folder's tree id (relpath -> id, "" for the root)."""
    # folder relpath -> [(sort key, entry bytes)]; git sorts a subtree as "name/".
    dirs: dict[str, list[tuple[bytes, bytes]]] = {"": []}
    for path, (mode, sha) in entries.items():
        digest = bytes.fromhex(sha)
        folder, _, name = path.rpartition("/")
        if mode not in FILE_MODES or len(digest) != 20 or bad_name(name) or path[0] == "/":
            raise ValueError(f"bad tree entry {path!r}: {mode} {sha}")
        bname = os.fsencode(name)
        listing = dirs.get(folder)
        if listing is None:
            if any(bad_name(part) for part in folder.split("/")):
                raise ValueError(f"bad folder name in {path!r}")
            listing = dirs[folder] = []
            up = folder.rpartition("/")[0]
            while up not in dirs:  # register the missing parent folders
                dirs[up] = []
                up = up.rpartition("/")[0]
        listing.append((bname, mode.encode() + b" " + bname + b"\0" + digest))
    if clash := sorted(dirs.keys() & entries.keys()):
        raise ValueError(f"{clash[0]!r} is both a file and a folder")
    # Deepest folders first, so each subtree id is known before its parent is built.
    for folder in sorted(dirs, key=lambda d: d.count("/") if d else -1, reverse=True):
        listing = sorted(dirs[folder])
        tree = write(b"tree", b"".join(entry for _, entry in listing))
        if ids is not None:
            ids[folder] = tree
        if folder:
            parent, _, name = folder.rpartition("/")
            n = os.fsencode(name)
            dirs[parent].append((n + b"/", b"40000 " + n + b"\0" + bytes.fromhex(tree)))
    return tree


def parse_tree(body: bytes) -> list[tuple[str, str, str]]:
    """(mode, name, id) of each entry; ValueError for a damaged tree."""
    out = []
    pos = 0
    while pos < len(body):
        space = body.find(b" ", pos)
        nul = body.find(b"\0", space + 1)
        if space < 0 or nul < 0 or nul + 21 > len(body):
            raise ValueError("damaged tree")
        mode = body[pos:space].decode("latin-1")
        out.append((mode, os.fsdecode(body[space + 1 : nul]), body[nul + 1 : nul + 21].hex()))
        pos = nul + 21
    return out


def commit_body(
    tree: str, message: str, parents: Sequence[str] = (), when: datetime | None = None
) -> bytes:
    if when is None or when.tzinfo is None:  # naive means local time
        when = (when or datetime.now()).astimezone()
    stamp = (int(when.timestamp()), when.strftime("%z").encode())  # %z: "+0530", as git has it
    who = b"datmo <datmo@localhost> %d %s" % stamp
    lines = [b"tree " + tree.encode()] + [b"parent " + p.encode() for p in parents]
    lines += [b"author " + who, b"committer " + who, b"", message.rstrip("\n").encode()]
    return b"\n".join(lines) + b"\n"


def is_pack_index(data: bytes) -> bool:
    return data[:8] == _PACK_IDX_V2


def pack_index_has(idx: bytes, digest: bytes) -> bool:
    """Binary search of a version-2 pack .idx: header 8 bytes, fanout 256 x uint32, then
    the sorted 20-byte ids."""
    first = digest[0]
    lo = int.from_bytes(idx[4 + 4 * first : 8 + 4 * first], "big") if first else 0
    hi = int.from_bytes(idx[8 + 4 * first : 12 + 4 * first], "big")
    while lo < hi:
        mid = (lo + hi) // 2
        probe = idx[1032 + 20 * mid : 1052 + 20 * mid]
        if probe == digest:
            return True
        lo, hi = (mid + 1, hi) if probe < digest else (lo, mid)
    return False
