"""The files a snapshot holds, for viewers: listed, and read one at a time by path.

Only what the snapshot's own manifest names can be read: a path is looked up in it,
never joined onto a folder, so no request can reach any other file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datmo.core.controller import snapshot as snapshots
from datmo.core.controller.checkout import state_of
from datmo.core.storage.project import ProjectContext
from datmo.errors import NotFound


@dataclass
class Content:
    """A file's bytes: in memory (code, from the shadow repository) or a stored object."""

    name: str
    size: int
    data: bytes | None = None
    path: Path | None = None


def listing(ctx: ProjectContext, ref: str) -> list[dict[str, Any]]:
    """path, size (None for code until read), kind (code, file or link), sorted by path."""
    state = state_of(ctx, snapshots.get(ctx, ref))
    out: list[dict[str, Any]] = [{"path": p, "size": None, "kind": "code"} for p in state.code]
    out += [{"path": p, "size": size, "kind": "file"} for p, (_, size, _) in state.files.items()]
    out += [{"path": p, "size": None, "kind": "link"} for p in state.links]
    return sorted(out, key=lambda f: f["path"])


def read(ctx: ProjectContext, ref: str, path: str) -> Content:
    """One file of a snapshot; NotFound if the snapshot holds no such file."""
    snap = snapshots.get(ctx, ref)
    state = state_of(ctx, snap)
    name = path.rsplit("/", 1)[-1]
    if path in state.files:
        digest, size, _ = state.files[path]
        return Content(name, size, path=ctx.store.objects.path(digest))
    if path in state.code:
        mode, sha = state.code[path]
        if mode != "120000":  # a symlink's blob is its target, not a file
            kind, body = ctx.store.git.read_object(sha)
            if kind == "blob":
                return Content(name, len(body), data=body)
    raise NotFound(f"snapshot {snap.id[:8]} holds no file '{path}'")
