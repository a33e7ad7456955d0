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
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

from datmo.core.entity.run import Run
from datmo.core.storage.fsutil import chown
from datmo.core.storage.indexrows import (
    COLUMNS,
    DDL,
    RACY_NS,
    RUN_COLUMNS,
    SCHEMA,
    packed,
    stored_rows,
    upgrade,
    value_rows,
)
from datmo.core.storage.store import Store
from datmo.errors import CorruptStore

SCAN_BUDGET = 300  # thousands of SQLite steps a page's scan may take (a few milliseconds)

# Per thread: a SQLite connection belongs to the thread that opened it.
_LOCAL = threading.local()


def _shared() -> weakref.WeakKeyDictionary[Store, RunIndex]:
    found: weakref.WeakKeyDictionary[Store, RunIndex] | None = getattr(_LOCAL, "indexes", None)
    if found is None:
        found = _LOCAL.indexes = weakref.WeakKeyDictionary()
    return found


def close_shared() -> None:
    """Close the connections RunIndex.shared kept open in this thread (a command's end)."""
    shared = _shared()
    for idx in list(shared.values()):
        idx.close()
    shared.clear()


def _identity(path: os.PathLike[str]) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class RunIndex:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.path = store.dir / "index.sqlite"
        self.runs_dir = store.dir / "runs"
        self._db: sqlite3.Connection | None = None
        self._file: tuple[int, int] | None = None  # the (device, inode) it has open
        self._new = False  # made by this connection: holds none of the records yet

    @classmethod
    def shared(cls, store: Store) -> RunIndex:
        """The store's index, kept open for the thread's life: opening SQLite and closing
        it (the last close checkpoints the WAL) cost a writer ~3 ms a record, which a
        queue worker and its supervisors pay many times a second. Opened again when the
        file was replaced (fsck rebuilt it), so no process works on an unlinked copy."""
        shared = _shared()
        idx = shared.get(store)
        if idx is None:
            idx = shared[store] = cls(store)
        elif idx._file is not None and idx._file != _identity(idx.path):
            idx.close()
        return idx

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            fresh = not self.path.exists()
            try:
                db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                upgrade(db)
                db.executescript(DDL)
            except sqlite3.DatabaseError:
                # Only derived data lives here: a damaged index is rebuilt, never trusted.
                self._discard()
                db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                db.executescript(DDL)
                fresh = True
            if fresh:
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        chown(f"{self.path}{suffix}", self.store.owner)
            self._db, self._file, self._new = db, _identity(self.path), fresh
        return self._db

    def _discard(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.path}{suffix}")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db, self._file = None, None

    # -- writes ---------------------------------------------------------------
    def upsert(self, docs: Sequence[dict[str, Any]], fresh: bool = True) -> None:
        """Call right after writing the records, under the project lock. fresh: whether
        the index was up to date just before those writes (else it is brought up to date)."""
        if self.db is not None and self._new:  # a new index: filled first, then trusted
            self._new = False
            fresh = False
        self._upsert_many(docs, self._mtime_of)
        if fresh:
            self._note_folder(by_writer=True)
        else:  # scanned under the writer's lock, its own write included: a writer's note
            self._sync(by_writer=True)

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
        rows = [(*(d.get(c) for c in COLUMNS), packed(d), mtime(d["id"])) for d in docs]
        marks = ",".join("?" * (len(COLUMNS) + 2))
        with self._tx():
            self._delete([d["id"] for d in docs])
            self.db.executemany(f"INSERT INTO runs ({RUN_COLUMNS}) VALUES ({marks})", rows)
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

    def _sync(self, by_writer: bool = False) -> int:
        if self.is_fresh():
            return 0
        # Laid out by another datmo since this connection opened it (kept open: shared)?
        upgrade(self.db)
        self.db.executescript(DDL)
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
        self._note_folder(by_writer)
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
        offset: int = 0,
    ) -> list[Run]:
        self.refresh()
        try:
            return self._select(where, params, order, order_params, limit, offset)
        except sqlite3.DatabaseError as e:
            if "malformed" not in str(e) and "not a database" not in str(e):
                raise
            self.rebuild()
            return self._select(where, params, order, order_params, limit, offset)

    def count(self, where: str = "", params: Sequence[Any] = ()) -> int:
        """How many runs a filter selects (call after a query, which refreshes)."""
        sql = "SELECT count(*) FROM runs" + (f" WHERE {where}" if where else "")
        return int(self.db.execute(sql, tuple(params)).fetchone()[0])

    def page(
        self,
        where: tuple[str, Sequence[Any], str],
        order: str,
        order_params: Sequence[Any],
        limit: int,
        offset: int,
    ) -> list[Run]:
        """A page of runs. where: (set-based SQL, its parameters, the same filter as
        per-run probes). In the default order (newest first, an index), the probes read
        runs in that order and stop at the page's end: a page of a filter that many runs
        pass costs the same at 100 runs or 100,000. A filter few runs pass would make
        that scan long, so it has a budget; past it the set-based query answers."""
        self.refresh()
        sql, params, scan = where
        if scan and sql and order.startswith("created_at"):
            budget = [SCAN_BUDGET]

            def spent() -> int:
                budget[0] -= 1
                return int(budget[0] <= 0)

            self.db.set_progress_handler(spent, 1000)
            try:
                return self._select(scan, params, order, order_params, limit, offset)
            except sqlite3.OperationalError as e:
                if "interrupt" not in str(e):
                    raise
            finally:
                self.db.set_progress_handler(None, 0)
        return self.query(sql, params, order, order_params, limit, offset)

    def _select(
        self,
        where: str,
        params: Sequence[Any],
        order: str,
        order_params: Sequence[Any],
        limit: int | None,
        offset: int = 0,
    ) -> list[Run]:
        sql = "SELECT doc FROM runs"
        if where:
            sql += f" WHERE {where}"
        sql += f" ORDER BY {order}, id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
        rows = self.db.execute(sql, (*params, *order_params))
        # One decode of all the rows together: per-call costs add up over thousands.
        try:
            packed = json.loads("[" + ",".join(row[0] for row in rows) + "]")
            return [Run.from_row(values) for values in packed]
        except (TypeError, ValueError, CorruptStore):  # a row damaged by hand: rebuilt
            raise sqlite3.DatabaseError("malformed row in the run index") from None

    def snapshot_rows(self) -> dict[str, Any] | None:
        """The rows as stored, read without writing anything (for fsck); None: no index
        yet (see indexrows.stored_rows)."""
        return stored_rows(self.path)

    def referring(self, column: str, value: str) -> list[str]:
        """Ids of the runs whose before_snapshot_id, after_snapshot_id or environment_id
        is value."""
        assert column in ("before_snapshot_id", "after_snapshot_id", "environment_id")
        self.refresh()
        return [r[0] for r in self.db.execute(f"SELECT id FROM runs WHERE {column} = ?", (value,))]

    def referenced(self) -> tuple[set[str], set[str]]:
        """(every snapshot id and every environment id some run refers to)."""
        self.refresh()
        snaps: set[str] = set()
        envs: set[str] = set()
        for before, after, env in self.db.execute(
            "SELECT before_snapshot_id, after_snapshot_id, environment_id FROM runs"
        ):
            snaps.update(s for s in (before, after) if s)
            if env:
                envs.add(env)
        return snaps, envs

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
