"""A derived SQLite index of run records, for fast listing and filtering.

The JSON records stay the truth. Writers update the index right after the
record (under the project lock) and note the runs folder's mtime then; a reader
that finds the folder changed since (a writer died between the two steps, or
files were copied in by hand) brings the index up to date from the records. A
writer's note is trusted at once: every datmo writer holds the lock and updates
the index itself, so a RUNNING run that records its metrics every second costs a
reader nothing. A note taken by a reader's own scan of the folder is trusted only
once its mtime is older than the racy window (a record written during the scan).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from typing import Any

from datmo.core.entity.base import field_defaults
from datmo.core.entity.run import ROW_FIELDS, Run
from datmo.core.storage.fsutil import chown
from datmo.core.storage.store import Store
from datmo.errors import CorruptStore

SCHEMA = 6
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
)

_DDL = """
CREATE TABLE IF NOT EXISTS runs (
  rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, created_at TEXT, status TEXT, type TEXT,
  command TEXT, environment_id TEXT, exit_code INTEGER, message TEXT, duration_s REAL,
  doc TEXT, file_mtime_ns INTEGER
);
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
_TABLES = ("runs", "run_values", "meta")
_RUN_COLUMNS = ", ".join((*COLUMNS, "doc", "file_mtime_ns"))
# A row's doc is the record's values as a JSON array in field order: a third smaller than
# the record and quicker to decode (no keys), which is most of listing many runs.
FIELDS = ROW_FIELDS


def _packed(doc: dict[str, Any]) -> str:
    defaults, factories = field_defaults(Run)
    made = dict(factories)
    values = [doc[f] if f in doc else defaults[f] if f in defaults else made[f]() for f in FIELDS]
    return json.dumps(values, separators=(",", ":"))


def _unpacked(values: Any) -> Any:
    return dict(zip(FIELDS, values, strict=True)) if isinstance(values, list) else values


def _sql_value(value: Any) -> Any:
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
    rows = [("c", k, _sql_value(v), run_id) for k, v in config.items()]
    values = dict(metrics)
    for key, (low, high) in (doc.get("metric_ranges") or {}).items():
        values.setdefault(f"{key}.min", low)
        values.setdefault(f"{key}.max", high)
    rows += [("m", k, _sql_value(v), run_id) for k, v in values.items()]
    rows += [("t", tag, 1, run_id) for tag in dict.fromkeys(doc.get("tags") or [])]
    return rows


def _upgrade(db: sqlite3.Connection) -> None:
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
            for table in _TABLES:
                db.execute(f"DROP TABLE IF EXISTS {table}")
    finally:
        db.execute("COMMIT")


class RunIndex:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.path = store.dir / "index.sqlite"
        self.runs_dir = store.dir / "runs"
        self._db: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            fresh = not self.path.exists()
            try:
                db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                _upgrade(db)
                db.executescript(_DDL)
            except sqlite3.DatabaseError:
                # Only derived data lives here: a damaged index is rebuilt, never trusted.
                self._discard()
                db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                db.executescript(_DDL)
                fresh = True
            if fresh:
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        chown(f"{self.path}{suffix}", self.store.owner)
            self._db = db
        return self._db

    def _discard(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.path}{suffix}")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- writes ---------------------------------------------------------------
    def upsert(self, doc: dict[str, Any]) -> None:
        """Call right after writing the record, under the project lock."""
        self._upsert_many([doc], self._mtime_of)
        self._note_folder(by_writer=True)

    def remove(self, run_id: str) -> None:
        with self._tx():
            self._delete([run_id])
        self._note_folder(by_writer=True)

    def _delete(self, run_ids: Sequence[str]) -> None:
        ids = [(i,) for i in run_ids]
        self.db.executemany(
            "DELETE FROM run_values WHERE rid = (SELECT rid FROM runs WHERE id = ?)", ids
        )
        self.db.executemany("DELETE FROM runs WHERE id = ?", ids)

    def _mtime_of(self, run_id: str) -> int:
        try:
            return os.stat(self.runs_dir / f"{run_id}.json").st_mtime_ns
        except FileNotFoundError:
            return 0

    def _upsert_many(self, docs: Sequence[dict[str, Any]], mtime: Any) -> None:
        rows = [(*(d.get(c) for c in COLUMNS), _packed(d), mtime(d["id"])) for d in docs]
        marks = ",".join("?" * (len(COLUMNS) + 2))
        with self._tx():
            self._delete([d["id"] for d in docs])
            self.db.executemany(f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES ({marks})", rows)
            self.db.executemany(
                "INSERT INTO run_values SELECT rid, ?, ?, ? FROM runs WHERE id = ?",
                [row for d in docs for row in value_rows(d)],
            )

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _note_folder(self, by_writer: bool = False) -> None:
        mtime = self._folder_mtime()
        self.db.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            [
                ("folder_mtime_ns", mtime),
                ("noted_ns", time.time_ns()),
                ("noted_by_writer", int(by_writer)),
                ("schema", SCHEMA),
            ],
        )

    def _folder_mtime(self) -> int:
        try:
            return os.stat(self.runs_dir).st_mtime_ns
        except FileNotFoundError:
            return 0

    # -- freshness ------------------------------------------------------------
    def is_fresh(self) -> bool:
        meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("schema") != SCHEMA:
            return False
        noted = meta.get("folder_mtime_ns")
        if noted != self._folder_mtime():
            return False
        return bool(meta.get("noted_by_writer")) or noted < meta.get("noted_ns", 0) - RACY_NS

    def refresh(self) -> int:
        """Bring the index in line with the records; returns how many rows changed.

        A damaged index file is thrown away and built again: it holds nothing else.
        """
        try:
            return self._refresh()
        except sqlite3.DatabaseError:
            self.close()
            self._discard()
            return self._refresh()

    def _refresh(self) -> int:
        if self.is_fresh():
            return 0
        with self.store.lock():  # a writer between our read and our write would be undone
            return self._sync()

    def _sync(self) -> int:
        if self.is_fresh():
            return 0
        known = dict(self.db.execute("SELECT id, file_mtime_ns FROM runs").fetchall())
        present: dict[str, int] = {}
        with contextlib.suppress(FileNotFoundError), os.scandir(self.runs_dir) as it:
            for entry in it:
                if entry.name.endswith(".json") and not entry.name.startswith("."):
                    present[entry.name[:-5]] = entry.stat().st_mtime_ns
        stale = [i for i, m in present.items() if known.get(i) != m]
        gone = [i for i in known if i not in present]
        docs, damaged = [], []
        for run_id in stale:
            try:
                doc = self.store.read_entity("runs", run_id)
                Run.from_dict(doc)  # a record of the wrong shape is left out too
            except CorruptStore:
                damaged.append(run_id)  # fsck names it; listing shows the rest and says so
                continue
            docs.append(doc)
        if docs:
            self._upsert_many(docs, present.__getitem__)
        if gone or damaged:  # a record damaged since it was indexed loses its old row
            with self._tx():
                self._delete(gone + damaged)
        self._note_folder()
        # Never indexed, damaged records are stale at every sync, so this counts them all.
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('damaged', ?)", (len(damaged),))
        return len(docs) + len(gone)

    def damaged(self) -> int:
        """How many run records the last refresh could not read (and does not list)."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'damaged'").fetchone()
        return int(row[0]) if row else 0

    def rebuild(self) -> int:
        self.close()
        self._discard()
        return self.refresh()

    # -- reads ----------------------------------------------------------------
    def query(
        self,
        where: str = "",
        params: Sequence[Any] = (),
        order: str = "created_at DESC",
        order_params: Sequence[Any] = (),
        limit: int | None = None,
    ) -> list[Run]:
        self.refresh()
        try:
            return self._select(where, params, order, order_params, limit)
        except sqlite3.DatabaseError as e:
            if "malformed" not in str(e) and "not a database" not in str(e):
                raise
            self.rebuild()
            return self._select(where, params, order, order_params, limit)

    def _select(
        self,
        where: str,
        params: Sequence[Any],
        order: str,
        order_params: Sequence[Any],
        limit: int | None,
    ) -> list[Run]:
        sql = "SELECT doc FROM runs"
        if where:
            sql += f" WHERE {where}"
        sql += f" ORDER BY {order}, id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self.db.execute(sql, (*params, *order_params))
        # One decode of all the rows together: per-call costs add up over thousands.
        try:
            packed = json.loads("[" + ",".join(row[0] for row in rows) + "]")
            return [Run.from_row(values) for values in packed]
        except (TypeError, ValueError, CorruptStore):  # a row damaged by hand: rebuilt
            raise sqlite3.DatabaseError("malformed row in the run index") from None

    def snapshot_rows(self) -> dict[str, Any] | None:
        """The rows as stored, read without writing anything (for fsck); None: no index yet.

        A run whose filter values disagree with its row's record maps to None, so it
        never matches the records either.
        """
        if not self.path.exists():
            return None
        db = sqlite3.connect(f"file:{self.path}?immutable=1", uri=True)
        try:
            rows: dict[str, Any] = {
                row[0]: _unpacked(json.loads(row[1]))
                for row in db.execute("SELECT id, doc FROM runs")
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

    def sections(self, key: str) -> set[str]:
        """Which of config ('c') and metrics ('m') hold this key in any run."""
        query = "SELECT EXISTS(SELECT 1 FROM run_values WHERE sec = ? AND key = ?)"
        return {sec for sec in ("c", "m") if self.db.execute(query, (sec, key)).fetchone()[0]}

    def keys(self, sec: str, limit: int = 40) -> list[str]:
        """The distinct keys of a section, in order, one index seek each (not a scan)."""
        query = """
        WITH RECURSIVE k(key) AS (
          SELECT min(key) FROM run_values WHERE sec = :sec
          UNION ALL
          SELECT (SELECT min(key) FROM run_values WHERE sec = :sec AND key > k.key)
          FROM k WHERE k.key IS NOT NULL
        ) SELECT key FROM k WHERE key IS NOT NULL LIMIT :limit"""
        return [r[0] for r in self.db.execute(query, {"sec": sec, "limit": limit})]

    def ids(self) -> list[str]:
        self.refresh()
        return [r[0] for r in self.db.execute("SELECT id FROM runs")]
