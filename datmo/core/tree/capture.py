"""Turning the working tree into stored state (and describing it without storing)."""

from __future__ import annotations

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
            stamp = _stamp(ctx)
            changed = None if stamp is None else stamp.changed_folders(os.fspath(ctx.root))
            found = None
            if stamp is not None and changed == []:
                found = _from_stamp(ctx, stamp)
            elif stamp is not None and changed:
                found = _incremental(ctx, stamp, changed)
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


def last_path(ctx: ProjectContext) -> Path:
    return ctx.store.path("cache", "lastcapture")


def _from_stamp(ctx: ProjectContext, stamp: TreeStamp) -> Captured | None:
    """The last capture's outcome, for a tree that provably has not changed since."""
    store = ctx.store
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


def _incremental(ctx: ProjectContext, stamp: TreeStamp, changed: list[int]) -> Captured | None:
    """Only the changed folders captured again (update.py); None: do a full capture."""
    from datmo.core.tree import update

    store, objects = ctx.store, ctx.store.objects
    last = update.LastCapture.load(last_path(ctx))
    if last is None or not store.git.has_object(stamp.outcome.code_id):
        return None
    started = time.time_ns()  # before any folder is read again: see stamp.py
    try:
        done = update.update(ctx, stamp, changed, last)
    except BaseException:
        store.git.abort()
        raise
    if done is None:
        return None
    state, parts = done.state, done.last.parts
    if not all(map(objects.has, (d for d, _, _ in state.files.values()))):
        return None  # removed by hand since (gc drops the stamp first)
    code_id = done.last.code_id
    files_id = objects.put_bytes(state.manifest_bytes())
    # As in _capture: .py files stored as files (not code), in path order.
    stored = sorted((p, v[0]) for p, v in state.files.items() if p.endswith(".py"))
    content_key = f"{code_id} {_digest_of(stored)}"
    env = _env_cache(ctx)
    answer = env.cached(ctx.root, content_key)
    if answer is None:
        imports: set[str] = set()
        for part in parts:
            imports.update(part["imports"])
        top, nested = update.module_names(stamp.folders, parts)
        answer = env.from_imports(ctx.root, imports, top, nested)
        env.keyed(ctx.root, content_key, answer)
    requirements, platform = answer
    skipped = [s for s in done.last.skipped if s[0] != ".datmo"]
    outcome = Outcome(
        code_id=code_id,
        files_id=files_id,
        code_count=len(state.code),
        file_count=len(state.files),
        total_bytes=done.total_bytes,
        skipped=skipped,
        content_key=content_key,
        file_digests=[d for d, _, _ in state.files.values()],
    )
    _keep(ctx, stamp.spliced(done.replaced, outcome, started), done.last, files_id)
    return Captured(
        code_id=code_id,
        files_id=files_id,
        requirements_id=objects.put_bytes(requirements.encode()),
        platform=platform,
        code_count=len(state.code),
        file_count=len(state.files),
        total_bytes=done.total_bytes,
        skipped=skipped,
    )


def _keep(ctx: ProjectContext, stamp: TreeStamp | None, last: Any, files_id: str) -> None:
    """Save the stamp and the last capture's parts together, or drop both."""
    store = ctx.store
    if stamp is None:
        store.remove("cache/treestamp")  # what the last one vouched for is gone anyway
        store.remove("cache/lastcapture")
        return
    from datmo.core.tree.update import stamp_digest

    last.files_id = files_id
    last.stamp = stamp_digest(stamp)
    last.save(last_path(ctx), store.owner)
    stamp.save(stamp_path(ctx), store.owner)


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
    try:
        with store.objects.batch():  # one durability pass; nothing names the objects before it
            state = describe(store, result, cache, capture=True, root=tree, progress=progress)
        trees: dict[str, str] = {}
        code_id = store.git.write_tree(state.code, trees)
        # Durable before anything names them: the stat cache, the stamp, the record.
        store.git.sync()
    except BaseException:
        store.git.abort()  # a pack begun here is nobody's
        raise
    if tree == ctx.root:
        cache.prune(e.path for e in result.entries)
        cache.save()
    for src, dest in extras:
        state.extra.update(_capture_extra(ctx, src, dest))
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
        last = None
        if made is not None:
            from datmo.core.tree.update import LastCapture

            imports = env_cache.file_imports(tree, py_files)
            last = LastCapture.of(result, state, code_id, files_id, trees, imports, skipped)
        _keep(ctx, made, last, files_id)
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
