"""Run records and their data: `.datmo/runs/<id>.json` (the truth), its row in the run
index, and `.datmo/run-data/<id>/`: the task's output.log, the metrics.jsonl it appends
to, the supervisor's own log, replies to the task's requests, and a stop request.

Records are read here as written; whether a RUNNING run's supervisor is still alive is
the task controller's judgement (datmo.core.controller.task.effective).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datmo.core.entity.run import Run
from datmo.core.storage.fsutil import chown, makedirs
from datmo.core.storage.index import RunIndex
from datmo.core.storage.store import Store
from datmo.core.util.memory import gc_paused
from datmo.core.util.signals import deferred_interrupt

KIND = "runs"
DATA = "run-data"
STOP_FILE = "stop"  # a stop request the supervisor picks up, even before it has taken over
LOG = "output.log"
METRICS = "metrics.jsonl"
REPLIES = "replies"
SUPERVISOR_LOG = "supervisor.log"


def data_dir(store: Store, run_id: str, create: bool = False) -> Path:
    path = store.path(DATA, run_id)
    if create:
        makedirs(path, store.owner)
    return path


def log_path(store: Store, run_id: str) -> Path:
    return data_dir(store, run_id) / LOG


def make_data(store: Store, run_id: str) -> Path:
    """A new run's data folder, with the files its supervisor and task write to."""
    data = data_dir(store, run_id, create=True)
    makedirs(data / REPLIES, store.owner)
    for name in (LOG, METRICS, SUPERVISOR_LOG):
        (data / name).touch()
        chown(data / name, store.owner)
    return data


def save(store: Store, run: Run) -> Run:
    """Write the record and its index row together, under the project lock."""
    with store.lock(), deferred_interrupt():
        doc = run.to_dict()
        store.write_entity(KIND, doc)
        idx = RunIndex(store)
        try:
            idx.upsert(doc)
        finally:
            idx.close()
    return run


def read(store: Store, ref: str) -> Run:
    """A record by id or unique prefix, as written."""
    return Run.from_dict(store.read_entity(KIND, store.resolve(KIND, ref)))


def query(
    store: Store,
    where: str = "",
    params: Sequence[Any] = (),
    order: str = "created_at DESC",
    order_params: Sequence[Any] = (),
    limit: int | None = None,
) -> tuple[list[Run], int]:
    """(the records the index selects, how many records are too damaged to list)."""
    idx = RunIndex(store)
    try:
        with gc_paused():
            found = idx.query(where, params, order, order_params, limit)
        return found, idx.damaged()
    finally:
        idx.close()


def discard(store: Store, run_id: str) -> None:
    """Remove a run's record, index row and data, as if it had never been made."""
    with store.lock(), deferred_interrupt():
        store.delete_entity(KIND, run_id)
        idx = RunIndex(store)
        try:
            idx.remove(run_id)
        finally:
            idx.close()
    shutil.rmtree(data_dir(store, run_id), ignore_errors=True)
