"""A run's before snapshot made without touching the working tree.

A queued or isolated run works in a copy of its own, so its before snapshot is the tree
as it is now with the run's merged config file in it, while the file in your working
tree stays as it is. The tree is captured once (a sweep of a thousand runs captures it
once too); each run's snapshot is derived from that capture by storing the merged config
file and rewriting only the code tree or file list that holds it: no second capture.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from datmo.core.controller import runconfig
from datmo.core.controller import snapshot as snapshots
from datmo.core.controller.checkout import state_of
from datmo.core.controller.runconfig import RunConfig
from datmo.core.controller.task import Progress
from datmo.core.entity.base import new_id, utcnow
from datmo.core.entity.snapshot import Snapshot
from datmo.core.storage.project import ProjectContext
from datmo.core.task.spec import RunSpec
from datmo.core.tree import configfile


def capture(ctx: ProjectContext, message: str, progress: Progress | None = None) -> Snapshot:
    """The working tree as it is now: a hidden snapshot (the current one when unchanged).
    A working copy holds only what the snapshot stores, so what was left out is said."""
    made = snapshots.create(ctx, message, hidden=True, made_by="run", reuse_state=True)
    said = left_out_note(made.skipped)
    if said and progress:
        progress(said)
    return made.snapshot


def left_out_note(skipped: list[Any]) -> str:
    """One line naming what a working copy will not hold, or ''."""
    paths = [s.path if hasattr(s, "path") else s[0] for s in skipped]
    if not paths:
        return ""
    shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    return (
        f"not in the run's working copy (left out of snapshots): {shown}; "
        "pass inputs such as datasets with --data SRC>DEST"
    )


def message_of(rc: RunConfig) -> str:
    return f"before run: {rc.command}"[:200]


def before_of(ctx: ProjectContext, spec: RunSpec, base: Snapshot) -> Snapshot:
    """A queued run's before snapshot, derived from base as run.prepare would."""
    rc = runconfig.prepare(spec, ctx.root, Path.cwd())
    return before_snapshot(ctx, base, rc, message_of(rc))


def before_snapshot(ctx: ProjectContext, base: Snapshot, rc: RunConfig, message: str) -> Snapshot:
    """The run's before snapshot: base (a capture of the tree) with the run's config, and
    its config file holding the -c values where they change it."""
    replace: dict[str, bytes] = {}
    if rc.file is not None and rc.changes:
        rel = os.path.relpath(os.path.realpath(rc.file), os.path.realpath(ctx.root))
        text = rc.file.read_text(encoding="utf-8")
        merged = configfile.merged_text(text, rc.file_values, rc.changes)
        replace[rel.replace(os.sep, "/")] = merged.encode("utf-8")
    if not replace and base.config == rc.values:
        return base
    return derive(ctx, base, message, rc.values, replace)


def derive(
    ctx: ProjectContext,
    base: Snapshot,
    message: str,
    config: dict[str, Any],
    replace: dict[str, bytes],
) -> Snapshot:
    """A new hidden snapshot: base's code and files with some files' content replaced."""
    store = ctx.store
    state = state_of(ctx, base)
    threshold = ctx.info.file_threshold
    for path, data in replace.items():
        if len(data) < threshold and b"\0" not in data[:8000]:  # code, as capture decides
            mode = state.code[path][0] if path in state.code else "100644"
            state.code[path] = (mode, store.git.write_blob(data))
            state.files.pop(path, None)
        else:
            digest = store.objects.put_bytes(data)
            fmode = state.files[path][2] if path in state.files else 0o644
            state.files[path] = (digest, len(data), fmode)
            state.code.pop(path, None)
    code_id = store.git.write_tree(state.code) if replace else base.code_id
    files_id = store.objects.put_bytes(state.manifest_bytes()) if replace else base.files_id
    snap = base.evolve(
        id=new_id(),
        created_at=utcnow(),
        message=message,
        label=None,
        tags=[],
        config=config,
        code_id=code_id,
        files_id=files_id,
        hidden=True,
        made_by="run",
        parent_id=base.id,
        run_id=None,
        deleted_at=None,
    )
    return snapshots.record(ctx, snap)
