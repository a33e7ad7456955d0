"""Turning the working tree into stored state (and describing it without storing)."""

from __future__ import annotations

import contextlib
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datmo.core.storage.project import ProjectContext
from datmo.core.tree.stamp import Outcome, TreeStamp, stamp_key
from datmo.core.util.memory import gc_paused

# Imported where used: a re-snapshot answered by the tree stamp needs none of them,
# and loading them is a good part of its ~60 ms.
if TYPE_CHECKING:
    from datmo.core.storage.statcache import StatCache
    from datmo.core.tree.envcache import EnvInfoCache
    from datmo.core.tree.scan import ScanResult
    from datmo.core.tree.state import TreeState
    from datmo.core.tree.unchanged import Watch


@dataclass
class Captured:
    """What a capture stored, for the snapshot record."""

    code_id: str
    files_id: str
    requirements_id: str | None
    platform: dict[str, Any]
    code_count: int
    file_count: int
    total_bytes: int
    skipped: list[list[str]]


def stat_cache(ctx: ProjectContext) -> StatCache:
    from datmo.core.storage.statcache import StatCache

    return StatCache(ctx.store.path("cache", "stat"), ctx.store.owner)


def scan_project(ctx: ProjectContext) -> ScanResult:
    from datmo.core.tree.scan import scan

    return scan(ctx.root, ctx.info.file_threshold)


def working_state(ctx: ProjectContext) -> TreeState:
    """The working tree's state, hashed but not stored (for status and checkout)."""
    from datmo.core.tree.state import describe

    result = scan_project(ctx)
    cache = stat_cache(ctx)
    state = describe(ctx.store, result, cache, capture=False)
    cache.save()
    return state


def capture_tree(
    ctx: ProjectContext, extras: list[tuple[Path, str]], root: Path | None = None
) -> Captured:
    """Store everything a snapshot needs; the caller writes the record.

    root: another tree to capture instead of the project (a rerun's scratch copy).
    """
    with gc_paused():  # per-file objects by the hundred thousand, and no cycles
        own = root is None or root == ctx.root
        if own and not extras:
            found = _from_stamp(ctx)
            if found is not None:
                return found
        return _capture(ctx, extras, root or ctx.root, stamp=own and not extras)


def stamp_path(ctx: ProjectContext) -> Path:
    return ctx.store.path("cache", "treestamp")


def _stamp(ctx: ProjectContext) -> TreeStamp | None:
    return TreeStamp.load(stamp_path(ctx), stamp_key(ctx.info.file_threshold))


def watch_inputs(ctx: ProjectContext, watch: Watch) -> None:
    """Sign what a capture answered by the tree stamp reads besides the tree (unchanged.py)."""
    from datmo.core.util import probe

    watch.add(stamp_path(ctx))
    watch.add(_env_cache(ctx).summary_path)
    watch.packages = probe.package_folders(os.fspath(ctx.root))
    watch.machine = probe.machine()


def unchanged_since(ctx: ProjectContext, code_id: str, files_id: str) -> bool:
    """Whether the working tree provably holds exactly this code and these files."""
    stamp = _stamp(ctx)
    return (
        stamp is not None
        and (stamp.outcome.code_id, stamp.outcome.files_id) == (code_id, files_id)
        and stamp.holds(os.fspath(ctx.root))
    )


def _from_stamp(ctx: ProjectContext) -> Captured | None:
    """The last capture's outcome, if the tree provably has not changed since."""
    store = ctx.store
    stamp = _stamp(ctx)
    if stamp is None or not stamp.holds(os.fspath(ctx.root)):
        return None
    o, objects = stamp.outcome, store.objects
    if not (
        store.git.has_object(o.code_id)
        and objects.has(o.files_id)
        and all(map(objects.has, o.file_digests))
    ):
        return None  # removed since (gc drops the stamp first; this is for hands in .datmo)
    env = _env_cache(ctx).cached(ctx.root, o.content_key)
    if env is None:
        return None  # the installed packages changed: the full capture recomputes
    requirements, platform = env
    return Captured(
        code_id=o.code_id,
        files_id=o.files_id,
        requirements_id=objects.put_bytes(requirements.encode()),
        platform=platform,
        code_count=o.code_count,
        file_count=o.file_count,
        total_bytes=o.total_bytes,
        skipped=o.skipped,
    )


def _capture(
    ctx: ProjectContext, extras: list[tuple[Path, str]], tree: Path, stamp: bool
) -> Captured:
    from datmo.core.storage.statcache import StatCache
    from datmo.core.tree.scan import scan
    from datmo.core.tree.state import bytes_to_store, describe
    from datmo.core.util.progress import Progress

    store = ctx.store
    started = time.time_ns()  # before any rules file is read: see stamp.py
    result = scan(tree, ctx.info.file_threshold)
    # A scratch tree gets a throwaway cache: its paths would only evict the project's entries.
    cache = stat_cache(ctx) if tree == ctx.root else StatCache(tree.parent / f".{tree.name}.stat")
    if not store.objects.reflinks_supported():
        extra_bytes = sum(_tree_size(src) for src, _ in extras)
        store.objects.check_space(bytes_to_store(store, result, cache) + extra_bytes)
    progress = Progress.to_stderr("Storing")
    with store.objects.batch():  # one durability pass; nothing names the objects before it
        state = describe(store, result, cache, capture=True, root=tree, progress=progress)
    if tree == ctx.root:
        cache.prune(e.path for e in result.entries)
        cache.save()
    for src, dest in extras:
        state.extra.update(_capture_extra(ctx, src, dest))
    code_id = _code_tree(ctx, state)
    files_id = store.objects.put_bytes(state.manifest_bytes())
    py_files = [
        (e.path, e.st)
        for e in result.entries
        if e.path.endswith(".py") and stat.S_ISREG(e.st.st_mode)  # never follow a link out
    ]
    env_cache = _env_cache(ctx)
    content_key = ""
    if any(stat.S_ISLNK(st.st_mode) for _, st in py_files):
        # A symlinked .py file's target can change without its link changing.
        requirements, platform = env_cache.compute(tree, py_files)
        stamp = False  # nor would a stamp see it
    else:
        # The content of every .py file: in the code's tree, or among the stored files.
        stored = [(p, state.files[p][0]) for p, _ in py_files if p in state.files]
        content_key = f"{code_id} {_digest_of(stored)}"
        requirements, platform = env_cache.compute_keyed(tree, py_files, content_key)
    requirements_id = store.objects.put_bytes(requirements.encode())
    total = sum(e.st.st_size for e in result.entries) + sum(v[1] for v in state.extra.values())
    skipped = [[s.path, s.reason] for s in result.skipped if s.path != ".datmo"]
    if stamp:
        outcome = Outcome(
            code_id=code_id,
            files_id=files_id,
            code_count=len(state.code),
            file_count=len(state.files),
            total_bytes=total,
            skipped=skipped,
            content_key=content_key,
            file_digests=[d for d, _, _ in state.files.values()],
        )
        made = TreeStamp.of(result, outcome, stamp_key(ctx.info.file_threshold), started)
        if made is None:
            store.remove("cache/treestamp")  # what the last one vouched for is gone anyway
        else:
            made.save(stamp_path(ctx), store.owner)
    return Captured(
        code_id=code_id,
        files_id=files_id,
        requirements_id=requirements_id,
        platform=platform,
        code_count=len(state.code),
        file_count=len(state.files) + len(state.extra),
        total_bytes=total,
        skipped=skipped,
    )


def _env_cache(ctx: ProjectContext) -> EnvInfoCache:
    from datmo.core.tree.envcache import EnvInfoCache

    return EnvInfoCache(ctx.store.path("cache", "envinfo.json"), ctx.store.owner)


def _code_tree(ctx: ProjectContext, state: TreeState) -> str:
    """The code's git tree; an unchanged set of entries reuses the last tree's id.

    Building and hashing every tree object again costs more than the whole rest of
    an unchanged re-snapshot of a big project.
    """
    from datmo.core.storage.fsutil import atomic_write_bytes

    store = ctx.store
    key = _digest_of([(p, f"{m}\0{s}") for p, (m, s) in sorted(state.code.items())])
    cache = store.path("cache", "tree")
    try:
        last_key, last_tree = cache.read_text().split()
        if last_key == key and store.git.has_object(last_tree):
            return last_tree
    except (OSError, ValueError):
        pass  # no cache yet, or a damaged one: it is only a shortcut
    tree = store.git.write_tree(state.code)
    with contextlib.suppress(OSError):
        atomic_write_bytes(cache, f"{key} {tree}\n".encode(), store.owner, durable=False)
    return tree


def _digest_of(pairs: list[tuple[str, str]]) -> str:
    from blake3 import blake3

    return blake3(
        "".join(f"{p}\0{d}\n" for p, d in pairs).encode("utf-8", "surrogateescape")
    ).hexdigest()


def _tree_size(src: Path) -> int:
    if src.is_file():
        return src.stat().st_size
    return sum(os.lstat(os.path.join(d, f)).st_size for d, _, files in os.walk(src) for f in files)


def _capture_extra(ctx: ProjectContext, src: Path, dest: str) -> dict[str, tuple[str, int, int]]:
    """Files from --paths, stored under dest; symlinks inside are not followed."""
    from datmo.core.tree.state import file_mode

    out: dict[str, tuple[str, int, int]] = {}
    objects = ctx.store.objects
    if src.is_file():
        digest, size = objects.put_file(src)
        out[dest] = (digest, size, file_mode(src.stat()))
        return out
    for folder, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(files):
            full = Path(folder, name)
            st = full.lstat()
            if not stat.S_ISREG(st.st_mode):
                continue
            rel = full.relative_to(src).as_posix()
            digest, size = objects.put_file(full)
            out[f"{dest}/{rel}"] = (digest, size, file_mode(st))
    return out
