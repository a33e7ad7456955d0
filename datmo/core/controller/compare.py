"""`snapshot diff`: what differs between two snapshots."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datmo.core.controller import snapshot as snapshots
from datmo.core.controller.checkout import state_of
from datmo.core.entity.snapshot import Snapshot
from datmo.core.storage.project import ProjectContext
from datmo.core.tree.state import Changes, TreeState, compare, same_content, split_changes

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


def _extras(state: TreeState) -> dict[str, Any]:
    return {f"[extra] {p}": ("extra", d) for p, (d, _, _) in state.extra.items()}


def diff(ctx: ProjectContext, first: str, second: str) -> SnapshotDiff:
    a, b = snapshots.get(ctx, first), snapshots.get(ctx, second)
    state_a, state_b = state_of(ctx, a), state_of(ctx, b)
    env = None
    if (a.environment_id, a.requirements_id) != (b.environment_id, b.requirements_id):
        env = (a.environment_id, b.environment_id)
    # A file that only moved between code and files (issue 17) is no change of content.
    code, files = split_changes(state_a, state_b, same_content(ctx.store))
    extra = compare(_extras(state_a), _extras(state_b))
    for name in ("added", "removed", "changed"):
        setattr(files, name, sorted([*getattr(files, name), *getattr(extra, name)]))
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
