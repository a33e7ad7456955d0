"""What `import datmo` offers in Python: snapshots, runs, and metrics from inside a task.

import datmo
datmo.snapshot.create(message="baseline", config={"lr": 0.01}, stats={"acc": 0.91})
for run in datmo.runs.ls(filter="acc>0.9", sort="acc", limit=10):
    print(run.id[:8], run.config, run.metrics, run.series["loss"][-1])
frame = datmo.runs.to_pandas(filter="status=SUCCESS")   # when pandas is installed
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datmo.core.entity.snapshot import Snapshot

__all__ = ["RunInfo", "Snapshot", "runs", "snapshot", "sweep"]


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


class RunInfo:
    """A run as recorded (every field of its record: id, status, config, metrics, tags,
    ...) and `series`: each metric's logged values as [step, value, time] lists."""

    def __init__(self, record: Any, ctx: Any) -> None:
        self.record = record
        self._ctx = ctx
        self._series: dict[str, list[list[Any]]] | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "record":
            raise AttributeError(name)
        return getattr(self.record, name)

    def __repr__(self) -> str:
        return f"<datmo run {self.record.id[:8]} {self.record.status} {self.record.command!r}>"

    @property
    def series(self) -> dict[str, list[list[Any]]]:
        if self._series is None:
            from datmo.core.controller import series

            self._series = series.full(self._ctx, self.record)
        return self._series


class _RunsAPI:
    """datmo.runs: the runs of the project, with the filter and sort of `datmo ls`."""

    def _ctx(self, home: str | Path | None) -> Any:
        from datmo.core.controller.project import open_project

        return open_project(Path(home) if home else None)

    def ls(
        self,
        filter: str | None = None,
        sort: str | None = None,
        limit: int | None = None,
        home: str | Path | None = None,
    ) -> list[RunInfo]:
        from datmo.core.controller import run as ctl

        ctx = self._ctx(home)
        return [RunInfo(r, ctx) for r in ctl.ls(ctx, filter, sort, limit)]

    def get(self, run_id: str, home: str | Path | None = None) -> RunInfo:
        from datmo.core.controller import run as ctl

        ctx = self._ctx(home)
        return RunInfo(ctl.get(ctx, run_id), ctx)

    def to_pandas(
        self,
        filter: str | None = None,
        sort: str | None = None,
        limit: int | None = None,
        home: str | Path | None = None,
    ) -> Any:
        """A DataFrame with a row per run: its fields, config.KEY and metrics.KEY columns."""
        try:
            import pandas
        except ImportError:
            from datmo.errors import DatmoError

            raise DatmoError("datmo.runs.to_pandas needs pandas: pip install pandas") from None
        rows = []
        for run in self.ls(filter, sort, limit, home):
            r = run.record
            row = {
                "id": r.id,
                "status": r.status,
                "command": r.command,
                "message": r.message,
                "tags": list(r.tags),
                "created_at": r.created_at,
                "duration_s": r.duration_s,
                "exit_code": r.exit_code,
            }
            row.update({f"config.{k}": v for k, v in sorted(r.config.items())})
            row.update({f"metrics.{k}": v for k, v in sorted(r.metrics.items())})
            rows.append(row)
        return pandas.DataFrame(rows)


runs = _RunsAPI()


def sweep(
    command: str,
    space: dict[str, Any],
    *,
    random: int | None = None,
    seed: int = 0,
    objective: str | None = None,
    optimize: str | None = None,
    trials: int | None = None,
    parallel: int | None = None,
    executor: str | None = None,
    gpus: str | None = None,
    num_gpus: int = 0,
    home: str | Path | None = None,
) -> list[RunInfo]:
    """`datmo sweep` from Python: space maps each key to a list of values to try, or to
    the text of `-c KEY=...` (`"loguniform(1e-5,1e-1)"`). With parallel, its runs are
    run at once and returned when done, best first by the objective; else staged.
    optimize="acc:max" with trials=N searches with Optuna's TPE sampler instead.

        datmo.sweep("python train.py --lr {lr}", {"lr": [0.1, 0.01]}, parallel=2,
                    objective="acc:max")
        datmo.sweep("python train.py", {"lr": "loguniform(1e-5,1e-1)"}, parallel=2,
                    optimize="acc:max", trials=20)
    """
    import json

    from datmo.core.controller import sweep as ctl
    from datmo.core.controller import worker
    from datmo.core.controller.project import open_project
    from datmo.core.task.spec import RunSpec

    ctx = open_project(Path(home) if home else None)
    items = [
        f"{k}={v}" if isinstance(v, str) else f"{k}=" + ",".join(json.dumps(x) for x in v)
        for k, v in space.items()
    ]
    spec = RunSpec(command=command, executor=executor or ctx.info.default_executor)
    spec.num_gpus = num_gpus
    made = ctl.create(
        ctx,
        spec,
        items,
        random=random,
        seed=seed,
        objective=objective,
        optimize=optimize,
        trials=trials,
        slots=parallel or 1,
    )
    if parallel:
        worker.Worker(ctx, parallel, worker.gpu_pool(gpus), sweep_id=made.id).run()
    made = ctl.get(ctx, made.id)
    return [RunInfo(r, ctx) for r in ctl.ranked(made, ctl.runs_of(ctx, made))]
