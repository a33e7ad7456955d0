"""What `import datmo` offers in Python: snapshots, and metrics from inside a task.

import datmo
datmo.snapshot.create(message="baseline", config={"lr": 0.01}, stats={"acc": 0.91})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datmo.core.entity.snapshot import Snapshot

__all__ = ["Snapshot", "snapshot"]


class _SnapshotAPI:
    """datmo.snapshot: works from any folder inside a project (or pass home=...)."""

    def _ctx(self, home: str | Path | None) -> Any:
        from datmo.core.controller.project import open_project

        return open_project(Path(home) if home else None)

    def create(
        self,
        message: str,
        config: dict[str, Any] | None = None,
        stats: dict[str, Any] | None = None,
        label: str | None = None,
        paths: list[str] | None = None,
        home: str | Path | None = None,
    ) -> Snapshot:
        from datmo.core.controller import snapshot as ctl

        ctx = self._ctx(home)
        result = ctl.create(
            ctx, message, label=label, config=config, metrics=stats, paths=paths or []
        )
        return result.snapshot

    def ls(self, all: bool = False, home: str | Path | None = None) -> list[Snapshot]:
        from datmo.core.controller import snapshot as ctl

        return ctl.ls(self._ctx(home), all=all)

    def get(self, snapshot_id: str, home: str | Path | None = None) -> Snapshot:
        from datmo.core.controller import snapshot as ctl

        return ctl.get(self._ctx(home), snapshot_id)

    def update(
        self,
        snapshot_id: str,
        message: str | None = None,
        label: str | None = None,
        config: dict[str, Any] | None = None,
        stats: dict[str, Any] | None = None,
        home: str | Path | None = None,
    ) -> Snapshot:
        from datmo.core.controller import snapshot as ctl

        return ctl.update(
            self._ctx(home), snapshot_id, message=message, label=label, config=config, metrics=stats
        )

    def delete(self, snapshot_id: str, force: bool = False, home: str | Path | None = None) -> None:
        from datmo.core.controller import snapshot as ctl

        ctl.delete(self._ctx(home), snapshot_id, force)


snapshot = _SnapshotAPI()
