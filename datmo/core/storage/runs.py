"""Run records and their data: `.datmo/runs/<id>.json` (the truth), its row in the run
index, and `.datmo/run-data/<id>/`: the task's output.log, the metrics.jsonl it appends
to, the supervisor's own log, replies to the task's requests, and a stop request.

Records are read here as written; whether a RUNNING run's supervisor is still alive is
the task controller's judgement (datmo.core.controller.task.effective).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datmo.core.entity.run import Run
from datmo.core.storage.fsutil import atomic_write_bytes, chown, makedirs
from datmo.core.storage.index import RunIndex
from datmo.core.storage.indexrows import FIELDS
from datmo.core.storage.query import compile_filter, compile_sort
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
CONFIG = "config.json"  # the config the task is given: $DATMO_CONFIG_FILE
SERIES = "series.json"  # every metric's series, written when the run ends
SHARED = (LOG, METRICS, SERIES, CONFIG, SUPERVISOR_LOG)  # what push, pull and bundles carry


def data_dir(store: Store, run_id: str, create: bool = False) -> Path:
    path = store.path(DATA, run_id)
    if create:
        makedirs(path, store.owner)
    return path


def log_path(store: Store, run_id: str) -> Path:
    return data_dir(store, run_id) / LOG


def make_data(store: Store, run_id: str, config: dict[str, Any]) -> Path:
    """A new run's data folder, with the files its supervisor and task write to, and the
    config its task is given."""
    data = data_dir(store, run_id, create=True)
    makedirs(data / REPLIES, store.owner)
    for name in (LOG, METRICS, SUPERVISOR_LOG):
        (data / name).touch()
        chown(data / name, store.owner)
    text = json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write_bytes(data / CONFIG, text.encode(), store.owner, 0o644)
    return data


def save(store: Store, run: Run) -> Run:
    """Write the record and its index row together, under the project lock."""
    save_many(store, [run])
    return run


def save_many(store: Store, runs: list[Run]) -> None:
    """Write records and their index rows (one transaction), under the project lock."""
    with store.lock(), deferred_interrupt():
        docs = [run.to_dict() for run in runs]
        if not store.index_writes:
            for doc in docs:
                store.write_entity(KIND, doc)
            return
        idx = RunIndex.shared(store)
        # Fresh before these writes? Then their own note keeps it so; if another host
        # (a Slurm node) wrote records meanwhile, they are read in as well.
        fresh = idx.is_fresh()
        for doc in docs:
            store.write_entity(KIND, doc)
        idx.upsert(docs, fresh)


def update(store: Store, run_id: str, lock_timeout: float | None = None, **changes: Any) -> Run:
    """Change some fields of the record as it is now, under the project lock: what
    another process changed meanwhile (a tag, a stop) is kept. lock_timeout: how long
    to wait for the lock (LockTimeout after), by default the store's."""
    with store.lock() if lock_timeout is None else store.lock(lock_timeout):
        return save(store, read(store, run_id).evolve(**changes))


def read(store: Store, ref: str) -> Run:
    """A record by id or unique prefix, as written."""
    return Run.from_dict(store.read_entity(KIND, store.resolve(KIND, ref)))


@dataclass
class Listing:
    """The records a filter and sort select, and what the user should hear about them."""

    runs: list[Run]
    damaged: int  # records too damaged to list ('datmo fsck' names them)
    unknown: list[str] = field(default_factory=list)  # filter or sort keys no run has
    known: dict[str, list[str]] = field(default_factory=dict)  # then: the keys there are
    total: int | None = None  # how many runs the filter selects, when asked (paging)


def query(
    store: Store,
    filter: str | None = None,
    sort: str | None = None,
    limit: int | None = None,
    sweep_id: str | None = None,
    offset: int = 0,
    total: bool = False,
) -> Listing:
    """Runs by the `ls --filter/--sort` language (storage/query.py), from the index."""
    idx = RunIndex.shared(store)
    idx.refresh()
    where = compile_filter(filter, idx.sections)
    if sweep_id:  # only a sweep's runs
        where.sql = f"({where.sql}) AND sweep_id = ?" if where.sql else "sweep_id = ?"
        where.params.append(sweep_id)
    order = compile_sort(sort, idx.sections)
    with gc_paused():
        if limit is not None and not sweep_id:
            filt = (where.sql, where.params, where.scan)
            found = idx.page(filt, order.sql, order.params, limit, offset)
        else:
            found = idx.query(where.sql, where.params, order.sql, order.params, limit, offset)
    count = idx.count(where.sql, where.params) if total else None
    unknown = list(dict.fromkeys(where.unknown + order.unknown))
    known = {"config": idx.keys("c"), "metrics": idx.keys("m")} if unknown else {}
    return Listing(found, idx.damaged(), unknown, known, count)


def keys(store: Store, limit: int = 200) -> dict[str, list[str]]:
    """The config keys and metric keys that runs have (for a column picker)."""
    idx = RunIndex.shared(store)
    idx.refresh()
    return {"config": idx.keys("c", limit), "metrics": idx.keys("m", limit)}


def queued(store: Store, sweep_id: str | None = None, limit: int | None = None) -> list[Run]:
    """Staged runs in the order a queue worker takes them: higher priority first, then
    oldest first; not those on Slurm (they wait in Slurm's queue). Ordered and cut by
    the index, so the first few of a thousand cost what the first few of ten do."""
    queue, executor = FIELDS.index("queue"), FIELDS.index("executor")
    where = f"status = 'QUEUED' AND json_extract(doc, '$[{executor}]') != 'slurm'"
    params: list[Any] = []
    if sweep_id:
        where += " AND sweep_id = ?"
        params.append(sweep_id)
    order = f"-COALESCE(json_extract(doc, '$[{queue}].priority'), 0), created_at"
    return RunIndex.shared(store).query(where, params, order, [], limit)


def of_sweep(store: Store, sweep_id: str) -> list[Run]:
    """Every run of a sweep, from the index."""
    idx = RunIndex.shared(store)
    idx.refresh()
    return idx.query("sweep_id = ?", [sweep_id], "created_at", [], None)


def discard(store: Store, run_id: str) -> None:
    """Remove a run's record, index row and data, as if it had never been made."""
    with store.lock(), deferred_interrupt():
        store.delete_entity(KIND, run_id)
        RunIndex.shared(store).remove(run_id)
    shutil.rmtree(data_dir(store, run_id), ignore_errors=True)


def shared_files(store: Store, run_id: str) -> dict[str, Path]:
    """A finished run's data files that travel with it (push, bundles): name -> path."""
    data = data_dir(store, run_id)
    return {name: data / name for name in SHARED if (data / name).is_file()}


def install_data(store: Store, run_id: str, files: dict[str, str]) -> None:
    """A pulled run's data files, from objects already in the store (hash-checked as they
    are written); before its record, so a record never lacks its data."""
    data = data_dir(store, run_id, create=True)
    for name, digest in files.items():
        if name in SHARED:
            store.objects.restore(digest, data / name, 0o644, store.owner)
