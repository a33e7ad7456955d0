"""`checkout --to DIR`: write a snapshot, or some of its paths, into another folder."""

from __future__ import annotations

import os
from pathlib import Path

from datmo.core.controller import snapshot as snapshots
from datmo.core.controller.checkout import (
    _safe_rel,
    _write_bytes,
    _write_link,
    check_paths,
    state_of,
)
from datmo.core.storage.fsutil import Owner, makedirs
from datmo.core.storage.project import ProjectContext
from datmo.core.tree.state import CODE_LINK_MODE, TreeState
from datmo.errors import DatmoError, NotFound


def to_project_paths(ctx: ProjectContext, paths: list[str], cwd: Path) -> list[str]:
    """Turn paths typed by the user (relative to cwd) into project-relative posix paths."""
    root = os.path.realpath(ctx.root)
    out = []
    for p in paths:
        full = os.path.normpath(os.path.join(os.path.realpath(cwd), p))
        if full != root and not full.startswith(root + os.sep):
            raise DatmoError(f"'{p}' is outside the project {root}; give a path inside it")
        out.append(Path(os.path.relpath(full, root)).as_posix())
    return out


def export(ctx: ProjectContext, ref: str, dest: Path, paths: list[str], cwd: Path) -> int:
    """Write the snapshot's files into dest; never overwrites an existing file."""
    snap = snapshots.get(ctx, ref)
    if snap.files_pending:  # pulled with --no-files: its files come now, from its remote
        from datmo.core.controller import pull

        snap = pull.ensure_files(ctx, snap)
    target = Path(os.path.abspath(dest))
    root = Path(os.path.realpath(ctx.root))
    real_target = Path(os.path.realpath(target))
    if real_target == root or root in real_target.parents:
        raise DatmoError(
            f"--to {dest} is inside the project; use plain 'datmo snapshot checkout' or a folder "
            "outside the project"
        )
    state = state_of(ctx, snap)
    wanted = sorted({*state.code, *state.files, *state.links, *state.extra})
    if paths:
        selected = []
        for want in ["" if p == "." else p for p in to_project_paths(ctx, paths, cwd)]:
            hits = [p for p in wanted if not want or p == want or p.startswith(want + "/")]
            if not hits:
                raise NotFound(f"'{want}' is not in snapshot {snap.id[:8]}")
            selected.extend(hits)
        wanted = sorted(set(selected))
    clashes = [p for p in wanted if os.path.lexists(target / p)]
    if clashes:
        raise DatmoError(
            f"{target / clashes[0]} already exists ({len(clashes)} clashing path(s)); "
            "choose an empty folder"
        )
    write_state(ctx, state, target, wanted, None)
    return len(wanted)


def write_state(
    ctx: ProjectContext, state: TreeState, target: Path, paths: list[str], owner: Owner | None
) -> None:
    """Write the given paths of a stored state under target (which may not exist yet)."""
    kinds: dict[str, str] = {p: "code" for p in state.code}
    kinds.update((p, "file") for p in state.files)
    kinds.update((p, "link") for p in state.links)
    kinds.update((p, "extra") for p in state.extra)
    check_paths(state)
    makedirs(target, owner)
    real_target = os.path.realpath(target)
    ready: set[Path] = set()  # folders made and checked: once each, not once per file
    for path in paths:
        kind = kinds[path]
        out = target / _safe_rel(path)
        if out.parent not in ready:
            makedirs(out.parent, owner)
            if not os.path.realpath(out.parent).startswith(real_target):
                raise DatmoError(f"refusing to write '{path}': a folder on its way is a symlink")
            ready.add(out.parent)
        if kind == "code":
            mode, sha = state.code[path]
            _, data = ctx.store.git.read_object(sha)
            if mode == CODE_LINK_MODE:
                _write_link(out, os.fsdecode(data), owner)
            else:
                _write_bytes(out, data, 0o755 if mode == "100755" else 0o644, owner)
        elif kind == "link":
            _write_link(out, state.links[path], owner)
        else:
            digest, _, fmode = (state.files if kind == "file" else state.extra)[path]
            ctx.store.objects.restore(digest, out, fmode, owner)
