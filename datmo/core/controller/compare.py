"""`snapshot diff`: what differs between two snapshots."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datmo.core.controller import snapshot as snapshots
from datmo.core.controller.checkout import state_of
from datmo.core.entity.snapshot import Snapshot
from datmo.core.storage.project import ProjectContext
from datmo.core.tree.state import Changes, TreeState, compare

Pair = tuple[Any, Any]


@dataclass
class SnapshotDiff:
    first: Snapshot
    second: Snapshot
    config: dict[str, Pair]
    metrics: dict[str, Pair]
    code: Changes
    files: Changes
    environment: Pair | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "first": self.first.id,
            "second": self.second.id,
            "config": {k: list(v) for k, v in self.config.items()},
            "metrics": {k: list(v) for k, v in self.metrics.items()},
            "code": vars(self.code),
            "files": vars(self.files),
            "environment": list(self.environment) if self.environment else None,
        }


def _values(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Pair]:
    keys = sorted(a.keys() | b.keys())
    return {k: (a.get(k), b.get(k)) for k in keys if a.get(k, ...) != b.get(k, ...)}


def _split(state: TreeState) -> tuple[dict[str, Any], dict[str, Any]]:
    sigs = state.signatures()
    code = {p: s for p, s in sigs.items() if p in state.code}
    files = {p: s for p, s in sigs.items() if p not in state.code}
    files.update((f"[extra] {p}", ("extra", d)) for p, (d, _, _) in state.extra.items())
    return code, files


def diff(ctx: ProjectContext, first: str, second: str) -> SnapshotDiff:
    a, b = snapshots.get(ctx, first), snapshots.get(ctx, second)
    code_a, files_a = _split(state_of(ctx, a))
    code_b, files_b = _split(state_of(ctx, b))
    env = None
    if (a.environment_id, a.requirements_id) != (b.environment_id, b.requirements_id):
        env = (a.environment_id, b.environment_id)
    code, files = compare(code_a, code_b), compare(files_a, files_b)
    _moved(code, files)
    return SnapshotDiff(
        first=a,
        second=b,
        config=_values(a.config, b.config),
        metrics=_values(a.metrics, b.metrics),
        code=code,
        files=files,
        environment=env,
    )


def code_diff(ctx: ProjectContext, first: str, second: str) -> str:
    """The unified diff of the code that changed between two snapshots, as git shows it
    (the shadow repository's git, with none of the user's git settings)."""
    a, b = snapshots.get(ctx, first), snapshots.get(ctx, second)
    if a.code_id == b.code_id:
        return ""
    proc = ctx.store.git.run(
        "diff", "--no-color", "--no-ext-diff", "--no-textconv", "-M", a.code_id, b.code_id
    )
    return proc.stdout.decode("utf-8", "replace")


def _moved(code: Changes, files: Changes) -> None:
    """A file that crossed the size threshold between code and files is one changed
    file, listed where it is now, not one added and one removed."""
    for now, was in ((code, files), (files, code)):
        crossed = set(now.added) & set(was.removed)
        if crossed:
            now.added = [p for p in now.added if p not in crossed]
            was.removed = [p for p in was.removed if p not in crossed]
            now.changed = sorted([*now.changed, *crossed])
