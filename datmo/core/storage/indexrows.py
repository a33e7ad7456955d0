"""The run index's layout: its tables, and a run record as its rows.

Kept apart from datmo.core.storage.index (reading and writing the index) so each stays
small; SCHEMA changes whenever the layout does, and an index of another layout is
dropped and filled again from the records.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from datmo.core.entity.base import field_defaults
from datmo.core.entity.run import ROW_FIELDS, Run

SCHEMA = 10
RACY_NS = 20_000_000  # a folder mtime this close to when we noted it may hide a later change
COLUMNS = (
    "id",
    "created_at",
    "status",
    "type",
    "command",
    "environment_id",
    "exit_code",
    "message",
    "duration_s",
    "before_snapshot_id",
    "after_snapshot_id",
    "sweep_id",
)

DDL = """
CREATE TABLE IF NOT EXISTS runs (
  rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, created_at TEXT, status TEXT, type TEXT,
  command TEXT, environment_id TEXT, exit_code INTEGER, message TEXT, duration_s REAL,
  before_snapshot_id TEXT, after_snapshot_id TEXT, sweep_id TEXT, doc TEXT,
  file_mtime_ns INTEGER
);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
CREATE INDEX IF NOT EXISTS runs_sweep ON runs(sweep_id);
-- What refers to a snapshot or an environment: a delete must know (references.py).
CREATE INDEX IF NOT EXISTS runs_before ON runs(before_snapshot_id);
CREATE INDEX IF NOT EXISTS runs_after ON runs(after_snapshot_id);
CREATE INDEX IF NOT EXISTS runs_environment ON runs(environment_id);
CREATE INDEX IF NOT EXISTS runs_newest ON runs(created_at, id);  -- ls: newest first, ties by id
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER);
-- One row per config and metric value and per tag, so a filter is an index search, not a
-- JSON parse of every run. sec: 'c' config, 'm' metrics (with KEY.min and KEY.max of a
-- metric's series), 't' a tag (its name as key, 1 as val). val keeps the value's own
-- type, as json_extract gives it. rid is the run's integer row id: small keys make the
-- searches and set operations cheap.
CREATE TABLE IF NOT EXISTS run_values (
  rid INTEGER NOT NULL, sec TEXT NOT NULL, key TEXT NOT NULL, val,
  PRIMARY KEY (rid, sec, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS run_values_by_key ON run_values(sec, key, val);
"""
TABLES = ("runs", "run_values", "meta")
RUN_COLUMNS = ", ".join((*COLUMNS, "doc", "file_mtime_ns"))
# A row's doc is the record's values as a JSON array in field order: a third smaller than
# the record and quicker to decode (no keys), which is most of listing many runs.
FIELDS = ROW_FIELDS


def packed(doc: dict[str, Any]) -> str:
    defaults, factories = field_defaults(Run)
    made = dict(factories)
    values = [doc[f] if f in doc else defaults[f] if f in defaults else made[f]() for f in FIELDS]
    return json.dumps(values, separators=(",", ":"))


def unpacked(values: Any) -> Any:
    return dict(zip(FIELDS, values, strict=True)) if isinstance(values, list) else values


def sql_value(value: Any) -> Any:
    """A JSON value as json_extract returns it: booleans as 1/0, containers as JSON text."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return value


def value_rows(doc: dict[str, Any]) -> list[tuple[str, str, Any, str]]:
    """(sec, key, val, run id) for each config and metric value and each tag of a run."""
    run_id = doc["id"]
    config, metrics = doc.get("config") or {}, doc.get("metrics") or {}
    rows = [("c", k, sql_value(v), run_id) for k, v in config.items()]
    values = dict(metrics)
    for key, (low, high) in (doc.get("metric_ranges") or {}).items():
        values.setdefault(f"{key}.min", low)
        values.setdefault(f"{key}.max", high)
    rows += [("m", k, sql_value(v), run_id) for k, v in values.items()]
    rows += [("t", tag, 1, run_id) for tag in dict.fromkeys(doc.get("tags") or [])]
    return rows


def upgrade(db: sqlite3.Connection) -> None:
    """An index laid out by another version of datmo is dropped, to be filled again."""

    def old() -> bool:
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.OperationalError:
            return False  # no tables yet
        return row is not None and row[0] != SCHEMA

    if not old():
        return
    # Checked again in one write transaction, so of two processes that meet an old index
    # only the first drops it (the schema row goes too) and no later write is undone.
    db.execute("BEGIN IMMEDIATE")
    try:
        if old():
            for table in TABLES:
                db.execute(f"DROP TABLE IF EXISTS {table}")
    finally:
        db.execute("COMMIT")


def stored_rows(path: Path) -> dict[str, Any] | None:
    """The rows as stored, read without writing anything (for fsck); None: no index yet.

    A run whose filter values disagree with its row's record maps to None, so it
    never matches the records either.
    """
    if not path.exists():
        return None
    # Read-only, but through the WAL: an index whose latest pages are still in its
    # write-ahead log is whole, though its main file alone is not.
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows: dict[str, Any] = {
            row[0]: unpacked(json.loads(row[1])) for row in db.execute("SELECT id, doc FROM runs")
        }
        stored: dict[str, set[tuple[str, str, Any, str]]] = {}
        query = "SELECT v.sec, v.key, v.val, r.id FROM run_values v JOIN runs r USING (rid)"
        for sec, key, val, run_id in db.execute(query):
            stored.setdefault(run_id, set()).add((sec, key, val, run_id))
        orphans = db.execute(
            "SELECT count(*) FROM run_values WHERE rid NOT IN (SELECT rid FROM runs)"
        ).fetchone()[0]
    finally:
        db.close()
    for run_id, doc in rows.items():
        mine = value_rows({**doc, "id": run_id}) if isinstance(doc, dict) else []
        if stored.get(run_id, set()) != set(mine):
            rows[run_id] = None
    if orphans:
        rows[""] = None
    return rows
