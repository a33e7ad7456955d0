"""Checkout: put a snapshot's code and files back, without ever losing work.

A journal naming the old and the new snapshot is written (durably) before the
first file changes. Every step is idempotent, so a checkout that was killed is
finished by the next datmo command: the tree ends in the new state, never a mix.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from datmo.core.controller import snapshot as snapshots
from datmo.core.entity.snapshot import Snapshot
from datmo.core.storage import fsutil
from datmo.core.storage.fsutil import Owner, atomic_write_bytes, chown, makedirs
from datmo.core.storage.project import ProjectContext
from datmo.core.tree.state import CODE_LINK_MODE, Changes, TreeState, compare, load, same_content
from datmo.errors import CorruptStore, DatmoError, NotFound, UnsavedChanges

JOURNAL = "journal/checkout.json"
TMP_PREFIX = ".datmo-restore-"


@dataclass
class CheckoutResult:
    snapshot: Snapshot
    saved: Snapshot | None  # hidden snapshot of the unsaved work, when --force saved it
    written: int
    removed: int


@dataclass
class Unsaved:
    """The current snapshot, its state, the working tree's state, and what differs."""

    current: Snapshot | None
    base: TreeState
    work: TreeState
    changes: Changes


def unsaved_changes(ctx: ProjectContext) -> Unsaved:
    from datmo.core.tree.capture import unchanged_since, working_state

    cur = snapshots.current(ctx)
    base = state_of(ctx, cur)
    if cur is not None and unchanged_since(ctx, cur.code_id, cur.files_id):
        return Unsaved(cur, base, base, Changes([], [], []))  # the tree stamp proves it
    work = working_state(ctx)
    changes = compare(base.signatures(), work.signatures(), same_content(ctx.store))
    return Unsaved(cur, base, work, changes)


def state_of(ctx: ProjectContext, snap: Snapshot | None) -> TreeState:
    return TreeState() if snap is None else load(ctx.store, snap.code_id, snap.files_id)


def checkout(ctx: ProjectContext, ref: str, force: bool = False) -> CheckoutResult:
    store = ctx.store
    target = snapshots.get(ctx, ref)
    if target.files_pending:  # pulled with --no-files: its files come now, from its remote
        from datmo.core.controller import pull

        target = pull.ensure_files(ctx, target)
    with store.lock():
        unsaved = unsaved_changes(ctx)
        cur, work, changes = unsaved.current, unsaved.work, unsaved.changes
        saved = None
        if changes:
            if not force:
                raise UnsavedChanges(
                    f"unsaved changes ({_summary(changes)}) would be lost; save them with "
                    "'datmo snapshot create -m MSG', or pass --force to keep them in a hidden "
                    "snapshot first"
                )
            saved = snapshots.create(
                ctx,
                f"unsaved work before checkout of {target.id[:8]}",
                hidden=True,
                made_by="checkout",
            ).snapshot
            cur = saved
        old = work if saved else unsaved.base
        new = state_of(ctx, target)
        _check_conflicts(ctx, old, new)
        _check_objects(ctx, new)
        store.write_json(JOURNAL, {"target": target.id, "source": cur.id if cur else None})
        try:
            written, removed = _apply(ctx, old, new, work)
        except (DatmoError, OSError) as e:
            _roll_back(ctx, old, new, cur.id if cur else None, e)
        _finish(ctx, target.id)
    return CheckoutResult(target, saved, written, removed)


def _roll_back(
    ctx: ProjectContext, old: TreeState, new: TreeState, source_id: str | None, why: Exception
) -> NoReturn:
    """A checkout that cannot finish (a damaged object) puts the old state back."""
    from datmo.core.tree.capture import working_state

    try:
        _apply(ctx, new, old, working_state(ctx))
    except (DatmoError, OSError) as e:
        _give_up(ctx, f"{why}; putting the old state back failed too ({e})")
    ctx.store.remove(JOURNAL)
    raise DatmoError(f"checkout stopped and the working tree is as before: {why}")


def _give_up(ctx: ProjectContext, why: str) -> NoReturn:
    """Keep the journal for people, but stop replaying it on every command."""
    failed = ctx.store.path("journal", f"failed-{int(time.time())}.json")
    os.replace(ctx.store.path(JOURNAL), failed)
    raise DatmoError(
        f"a checkout could not be finished or undone: {why}; see 'datmo status' and "
        f"'datmo fsck' (its journal was kept as {failed.name})"
    )


def recover_if_needed(ctx: ProjectContext) -> None:
    if not ctx.store.path(JOURNAL).exists():
        return
    from datmo.core.tree.capture import working_state

    with ctx.store.lock():
        try:
            journal = ctx.store.read_json(JOURNAL)
        except NotFound:
            return  # another process finished it while we waited for the lock
        try:
            target = Snapshot.from_dict(ctx.store.read_entity("snapshots", journal["target"]))
            source_id = journal.get("source")
            source = None
            if source_id:
                source = Snapshot.from_dict(ctx.store.read_entity("snapshots", source_id))
        except (DatmoError, KeyError, TypeError) as e:
            _give_up(ctx, f"its snapshots cannot be read ({e})")
        work = working_state(ctx)
        for path in [p for p in work.signatures() if os.path.basename(p).startswith(TMP_PREFIX)]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(ctx.root / path)
        old, new = state_of(ctx, source), state_of(ctx, target)
        try:
            _apply(ctx, old, new, work)
        except (DatmoError, OSError) as e:
            _roll_back(ctx, old, new, source_id, e)
        _finish(ctx, target.id)


def _finish(ctx: ProjectContext, target_id: str) -> None:
    ctx.store.write_pointer(snapshots.CURRENT, target_id)
    syncfs(ctx.root)  # the restored files must be on disk before the journal that redoes them goes
    ctx.store.remove(JOURNAL)


def syncfs(path: Path) -> None:
    """Flush the filesystem holding path (Linux syncfs), not every disk as sync does."""
    try:
        done = fsutil.syncfs(path)
    except OSError:  # a write-back error: sync reports none, but flushes what it can
        done = False
    if not done:
        os.sync()


def _summary(changes: Changes) -> str:
    parts = [f"{len(v)} {k}" for k, v in vars(changes).items() if v]
    return ", ".join(parts)


def _safe_rel(path: str) -> str:
    parts = path.split("/")
    if path.startswith("/") or ".." in parts or "" in parts or "." in parts:
        raise DatmoError(f"snapshot holds an unsafe path '{path}'; run 'datmo fsck'")
    return path


def _check_conflicts(ctx: ProjectContext, old: TreeState, new: TreeState) -> None:
    """Refuse to overwrite a path that no snapshot holds (excluded or ignored data)."""
    old_paths = old.signatures().keys()
    leaving = old_paths - new.signatures().keys()
    check_paths(new)
    for path in new.signatures():
        if path in old_paths:
            continue
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if prefix in leaving:
                break
            full = ctx.root / prefix
            if not os.path.lexists(full):
                break
            is_dir = os.path.isdir(full) and not os.path.islink(full)
            if is_dir and i < len(parts):
                continue  # a folder on the way; files go inside it
            if is_dir and _only_leaving(ctx.root, prefix, leaving):
                break  # every file in it is removed first, then the folder goes
            raise DatmoError(
                f"checkout would overwrite '{prefix}', which no snapshot holds; "
                "move it out of the way and try again"
            )


def check_paths(state: TreeState) -> None:
    """A stored state may only name plain relative paths, none of them under a symlink."""
    links = set(state.links) | {p for p, (mode, _) in state.code.items() if mode == CODE_LINK_MODE}
    for path in itertools.chain(state.code, state.files, state.links, state.extra):
        parts = _safe_rel(path).split("/")
        if links and any("/".join(parts[:i]) in links for i in range(1, len(parts))):
            raise CorruptStore(f"the snapshot puts '{path}' under a symlink; run 'datmo fsck'")


def _only_leaving(root: Path, folder: str, leaving: set[str] | Any) -> bool:
    for dirpath, _, files in os.walk(root / folder):
        rel = os.path.relpath(dirpath, root)
        if any(Path(rel, f).as_posix() not in leaving for f in files):
            return False
    return True


def _check_objects(ctx: ProjectContext, new: TreeState) -> None:
    """Every object the target needs must be there before the first file changes."""
    git, objects = ctx.store.git, ctx.store.objects
    missing = [p for p, (_, sha) in new.code.items() if not git.has_object(sha)]
    missing += [p for p, (digest, _, _) in new.files.items() if not objects.has(digest)]
    if missing:
        raise CorruptStore(
            f"the snapshot's stored copy of '{missing[0]}' is missing ({len(missing)} path(s)); "
            "nothing was changed; run 'datmo fsck'"
        )


def _apply(ctx: ProjectContext, old: TreeState, new: TreeState, work: TreeState) -> tuple[int, int]:
    root = ctx.root
    owner = ctx.store.owner
    new_sigs, work_sigs = new.signatures(), work.signatures()
    removed = 0
    for path in sorted(old.signatures().keys() - new_sigs.keys(), reverse=True):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(root / _safe_rel(path))
            removed += 1
        _prune_empty_dirs(root, Path(path).parent)
    written = 0
    real_root = os.path.realpath(root)
    for path, sig in sorted(new_sigs.items()):
        if work_sigs.get(path) == sig:
            continue
        dest = root / _safe_rel(path)
        makedirs(dest.parent, owner)
        parent_rel = os.path.dirname(path)
        if os.path.realpath(dest.parent) != os.path.join(real_root, parent_rel).rstrip("/"):
            raise DatmoError(f"refusing to write '{path}': a folder on its way is a symlink")
        if path in new.code:
            mode, sha = new.code[path]
            _, data = ctx.store.git.read_object(sha)
            if mode == CODE_LINK_MODE:
                _write_link(dest, os.fsdecode(data), owner)
            else:
                _write_bytes(dest, data, 0o755 if mode == "100755" else 0o644, owner)
        elif path in new.files:
            digest, _, fmode = new.files[path]
            ctx.store.objects.restore(digest, dest, fmode, owner)
        else:
            _write_link(dest, new.links[path], owner)
        written += 1
    return written, removed


def _prune_empty_dirs(root: Path, rel: Path) -> None:
    while str(rel) not in ("", "."):
        try:
            os.rmdir(root / rel)
        except OSError:
            return
        rel = rel.parent


def _write_bytes(dest: Path, data: bytes, mode: int, owner: Owner | None) -> None:
    # Not durable one by one: the journal redoes the checkout until syncfs at the end.
    atomic_write_bytes(dest, data, owner, mode, durable=False, prefix=TMP_PREFIX)


def _write_link(dest: Path, target: str, owner: Owner | None) -> None:
    tmp = dest.parent / f"{TMP_PREFIX}{os.getpid()}-{time.monotonic_ns()}"
    os.symlink(target, tmp)
    try:
        chown(tmp, owner)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
