"""`checkout --to DIR`: write a snapshot, or some of its paths, into another folder.

Nothing in DIR is ever overwritten, and a name in DIR appears only with its whole,
checked content (write_state).
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from datmo.core.controller import snapshot as snapshots
from datmo.core.controller.checkout import check_paths, state_of, syncfs
from datmo.core.storage.fsutil import Owner, chown, fsync_dir, makedirs
from datmo.core.storage.objerrors import write_error
from datmo.core.storage.project import ProjectContext
from datmo.core.storage.writeout import WriteOut
from datmo.core.tree.state import CODE_LINK_MODE, TreeState
from datmo.errors import DatmoError, NotFound

STAGE_PREFIX = ".datmo-checkout-"


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
    # an empty (or new) folder holds nothing to clash with: no lstat per path
    clashes = [p for p in wanted if os.path.lexists(target / p)] if _busy(target) else []
    if clashes:
        raise DatmoError(
            f"{target / clashes[0]} already exists ({len(clashes)} clashing path(s)); "
            "choose an empty folder"
        )
    write_state(ctx, state, target, wanted, None)
    return len(wanted)


def _busy(folder: Path) -> bool:
    try:
        with os.scandir(folder) as entries:
            return any(True for _ in entries)
    except (FileNotFoundError, NotADirectoryError):
        return False


def write_state(
    ctx: ProjectContext, state: TreeState, target: Path, paths: list[str], owner: Owner | None
) -> None:
    """Write the given paths of a stored state under target (which may not exist yet).

    Everything is written into a hidden folder of ours inside target first, each file
    under its final name there (writeout.py); once all of it is written and on disk
    (syncfs), its entries are renamed into target. So a name in target always holds
    its whole, checked content: a checkout that fails or is interrupted leaves nothing
    of its own behind, and one killed outright (SIGKILL, a power cut) leaves only that
    hidden `.datmo-checkout-*` folder, which nothing else uses (remove it).
    """
    check_paths(state)  # plain relative paths (all of them: paths come from state)
    makedirs(target, owner)
    real_target = os.path.realpath(target)
    try:
        stage = _stage(real_target, owner)
    except OSError as e:
        raise write_error(e, f"writing into {target}") from e
    try:
        _fill(ctx, state, stage, paths, owner)
        syncfs(Path(stage))  # the contents are on disk before any name in target shows them
        _publish(stage, real_target)
    except OSError as e:  # a folder made or renamed (WriteOut names its own files)
        raise write_error(e, f"writing into {target}") from e
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # empty when all went well


def _stage(folder: str, owner: Owner | None) -> str:
    for _ in range(100):
        stage = os.path.join(folder, f"{STAGE_PREFIX}{os.getpid()}-{os.urandom(4).hex()}")
        try:
            os.mkdir(stage, 0o700)
        except FileExistsError:
            continue
        chown(stage, owner)
        return stage
    raise DatmoError(f"no free name for a temporary folder in {folder}")


def _fill(
    ctx: ProjectContext, state: TreeState, stage: str, paths: list[str], owner: Owner | None
) -> None:
    """Write paths into stage, a new folder of ours: folders, files, then symlinks."""
    out = WriteOut(ctx.store.objects, owner)
    folders = {""}
    for path in paths:
        parent = path.rpartition("/")[0]
        while parent not in folders:
            folders.add(parent)
            parent = parent.rpartition("/")[0]
    for folder in sorted(folders)[1:]:  # parents first
        os.mkdir(os.path.join(stage, folder))
        chown(os.path.join(stage, folder), owner)
    links: list[tuple[str, str]] = []
    objs: list[tuple[str, int, str, int]] = []
    for path in paths:
        dest = os.path.join(stage, path)
        if path in state.code:
            mode, sha = state.code[path]
            data = ctx.store.git.read_object(sha)[1]
            if mode == CODE_LINK_MODE:
                links.append((os.fsdecode(data), dest))
            else:
                out.data(data, dest, 0o755 if mode == "100755" else 0o644)
        elif path in state.links:
            links.append((state.links[path], dest))
        else:
            digest, size, fmode = state.files[path] if path in state.files else state.extra[path]
            objs.append((digest, size, dest, fmode))
    # One thread: two made no difference in wall time on the 2-core ext4 machine and
    # spent more in the kernel (creating files in the same filesystem contends).
    for job in objs:
        out.object(*job)
    for where, dest in links:  # last: nothing is written through a link
        out.link(where, dest)


def _publish(stage: str, target: str) -> None:
    """Rename what stage holds into target, never over anything there; a folder that
    exists in both is merged. Then the folders renamed into are made durable."""
    touched: set[str] = set()

    def move(rel: str) -> None:
        src, dst = os.path.join(stage, rel), os.path.join(target, rel)
        if os.path.isdir(dst) and not os.path.islink(src) and os.path.isdir(src):
            if not os.path.realpath(dst).startswith(target + os.sep):
                raise DatmoError(f"refusing to write into '{rel}': it is a symlink out of {target}")
            for name in sorted(os.listdir(src)):
                move(os.path.join(rel, name))
            return
        _move_new(src, dst)
        touched.add(os.path.dirname(dst))

    for name in sorted(os.listdir(stage)):
        move(name)
    for folder in touched:
        fsync_dir(Path(folder))


def _move_new(src: str, dst: str) -> None:
    """rename(src, dst) that fails instead of replacing something at dst."""
    if not os.path.isdir(src) or os.path.islink(src):
        try:
            os.link(src, dst, follow_symlinks=False)  # EEXIST rather than a replace
        except FileExistsError:
            raise _exists(dst) from None
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                raise
        else:
            os.unlink(src)
            return
    if os.path.lexists(dst):  # a folder (or a filesystem without hard links)
        raise _exists(dst)
    os.rename(src, dst)


def _exists(path: str) -> DatmoError:
    return DatmoError(f"{path} appeared while the checkout ran; nothing of it was overwritten")
