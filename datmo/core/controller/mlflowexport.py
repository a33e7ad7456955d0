"""`datmo export mlflow`: finished runs into an MLflow tracking store, with MlflowClient
(`pip install 'datmo[mlflow]'`).

Each run becomes one MLflow run: its config as params (nested keys joined by '.'), every
metric's series with its steps and times, its status, start and end, its tags, and the
datmo ids as tags. The tag datmo.exported is written last: an export that was cut short
is found by it and made again; a complete one is never written twice (params cannot be
overwritten in MLflow), only its tags are brought up to date. Batches keep to MLflow's
limits (1,000 metrics, 100 params, 100 tags a call).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from datmo.core.controller import series, sharing
from datmo.core.entity.run import Run
from datmo.core.storage.project import ProjectContext
from datmo.errors import DatmoError, UsageError

RUN_TAG, DONE_TAG = "datmo.run_id", "datmo.exported"
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100
MAX_PARAM_VALUE = 6000
STATUS = {"SUCCESS": "FINISHED", "FAILED": "FAILED", "STOPPED": "KILLED", "LOST": "FAILED"}


@dataclass
class ExportResult:
    experiment: str
    created: list[str] = field(default_factory=list)  # datmo run ids exported now
    unchanged: list[str] = field(default_factory=list)  # exported before (tags refreshed)
    unfinished: list[Run] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _mlflow() -> Any:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # an export is no reason to call out
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise DatmoError("exporting to MLflow needs MLflow: pip install 'datmo[mlflow]'") from None
    for name in ("mlflow", "alembic"):  # its schema set-up talks on stderr at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient


def _ms(stamp: str | None) -> int | None:
    if not stamp:
        return None
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


def flatten(config: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from flatten(value, name + ".")
        else:
            yield name, value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _tags(ctx: ProjectContext, run: Run) -> dict[str, str]:
    tags = {
        RUN_TAG: run.id,
        "datmo.project_id": ctx.info.id,
        "datmo.status": run.status,
        "datmo.command": run.command[:5000],
        "datmo.executor": run.executor,
        "datmo.tags": ",".join(run.tags),
        "mlflow.runName": f"datmo {run.id[:8]}",
    }
    for key in (
        "before_snapshot_id",
        "after_snapshot_id",
        "environment_id",
        "sweep_id",
        "rerun_of",
    ):
        if getattr(run, key):
            tags[f"datmo.{key}"] = str(getattr(run, key))
    if run.message:
        tags["mlflow.note.content"] = run.message
    tags.update({f"datmo.tag.{t}": "true" for t in run.tags})
    return tags


def _metrics(ctx: ProjectContext, run: Run, start: int, metric_cls: Any) -> list[Any]:
    found = series.full(ctx, run)  # each metric's [step, value, time] points
    out = []
    for key in sorted(run.metrics):
        points = found.get(key) or [[0, run.metrics[key], start / 1000]]
        for i, point in enumerate(points):
            step, value, when = [*point, None, None, None][:3]
            number = _number(value)
            if number is None:  # text, or nothing: not a metric MLflow can hold
                continue
            stamp = int(float(when) * 1000) if isinstance(when, (int, float)) and when else start
            out.append(metric_cls(key, number, stamp, int(step) if isinstance(step, int) else i))
    return out


def export(
    ctx: ProjectContext, tracking_uri: str, experiment: str | None, ids: tuple[str, ...]
) -> ExportResult:
    sel = sharing.select(ctx, ids)
    if sel.snapshots and ids:
        raise UsageError(f"{sel.snapshots[0].id[:8]} is a snapshot; export mlflow takes run ids")
    client_cls = _mlflow()
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException

    name = experiment or ctx.info.name
    result = ExportResult(name, unfinished=sel.unfinished)
    try:
        client = client_cls(tracking_uri=tracking_uri)
        exp = client.get_experiment_by_name(name)
        if exp is not None and exp.lifecycle_stage != "active":
            raise DatmoError(
                f"MLflow experiment '{name}' is deleted; restore it or pass --experiment"
            )
        exp_id = exp.experiment_id if exp else client.create_experiment(name)
        for run in sel.runs:
            tags = _tags(ctx, run)
            query = f"tags.`{RUN_TAG}` = '{run.id}'"
            earlier = client.search_runs([exp_id], filter_string=query, max_results=100)
            done = [r for r in earlier if r.data.tags.get(DONE_TAG) == "1"]
            if done:
                stale = [RunTag(k, v) for k, v in tags.items() if done[0].data.tags.get(k) != v]
                for i in range(0, len(stale), MAX_TAGS):
                    client.log_batch(done[0].info.run_id, tags=stale[i : i + MAX_TAGS])
                result.unchanged.append(run.id)
                continue
            for r in earlier:  # an export cut short: made again from the start
                client.delete_run(r.info.run_id)
            start = _ms(run.started_at) or _ms(run.created_at) or 0
            made = client.create_run(
                exp_id, start_time=start, tags={RUN_TAG: run.id}, run_name=tags["mlflow.runName"]
            )
            mid = made.info.run_id
            params = []
            for key, value in flatten(run.config):
                if len(value) > MAX_PARAM_VALUE:
                    result.notes.append(
                        f"run {run.id[:8]}: config '{key}' is too long for MLflow; left out"
                    )
                    continue
                params.append(Param(key, value))
            for i in range(0, len(params), MAX_PARAMS):
                client.log_batch(mid, params=params[i : i + MAX_PARAMS])
            metrics = _metrics(ctx, run, start, Metric)
            for i in range(0, len(metrics), MAX_METRICS):
                client.log_batch(mid, metrics=metrics[i : i + MAX_METRICS])
            tag_list = [RunTag(k, v) for k, v in tags.items()]
            for i in range(0, len(tag_list), MAX_TAGS):
                client.log_batch(mid, tags=tag_list[i : i + MAX_TAGS])
            client.set_terminated(
                mid, status=STATUS.get(run.status, "FAILED"), end_time=_ms(run.ended_at)
            )
            client.set_tag(mid, DONE_TAG, "1")  # last: the export of this run is whole
            result.created.append(run.id)
    except MlflowException as e:
        raise DatmoError(
            f"MLflow at {tracking_uri} refused the export: {str(e).splitlines()[0]}"
        ) from None
    return result
