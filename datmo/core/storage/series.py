"""A run's metric series in a form read by range: `.datmo/run-data/<id>/series/`.

The task appends JSON lines to `metrics.jsonl` (the truth, written by the task SDK and
the supervisor's capture, which take no lock). This folder is derived from it and kept
up to date by whoever reads a series (the dashboard, `datmo plot`, the SDK) and by the
run's end: `sync` reads only the lines appended since the last sync (`pos` in the
manifest) and appends them here, so it costs what was logged since, not the whole run.

    manifest.json   {"version", "pos", "series": {"m:loss": {"file", "n", ...}}}
    <file>.f64      one point per 24 bytes: step, value, time (little-endian doubles;
                    a missing step or a value that is not a number is NaN)
    <file>.L<k>     one summary per complete block of 16**k points: the index and value
                    of the block's minimum, then of its maximum (32 bytes)

A series is named by its source and key: "m:KEY" logged through the SDK, "c:KEY" read
from the task's output. Files are only appended to and the manifest is replaced
atomically after them, so a reader that reads no more than the manifest's counts never
sees a half-written point; a sync that died half way is undone by the next one
(files cut back to the counts). Syncs take a lock of their own, never the project's,
and a reader that finds it held reads what is already committed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datmo.core.storage.fsutil import atomic_write_bytes, chown, makedirs
from datmo.core.storage.store import Store

FOLDER = "series"
MANIFEST = "manifest.json"
VERSION = 1
POINT = 24  # bytes: step, value, time
SUMMARY = 32  # bytes: index of min, min, index of max, max
FANOUT = 16
LEVELS = 5  # blocks of 16 .. 16**5 (about a million) points
NAN = float("nan")
_CHUNK = 1 << 24  # bytes of metrics.jsonl taken in at a time


def folder(store: Store, run_id: str) -> Path:
    return store.path("run-data", run_id, FOLDER)


def where(store: Store, run_id: str) -> str:
    """The run's data folder as text: readers join names to it without pathlib, which
    costs several microseconds a path (a chart of 20 runs builds dozens; issue 15)."""
    return os.path.join(store.dir, "run-data", run_id)


def manifest(store: Store, run_id: str) -> dict[str, Any]:
    """The committed state: what a reader may read. Empty when never synced."""
    return _manifest_in(os.path.join(where(store, run_id), FOLDER))


def _manifest_in(here: str) -> dict[str, Any]:
    try:
        with open(os.path.join(here, MANIFEST), "rb") as f:
            doc = json.loads(f.read())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        return {}
    return doc


def _float(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):  # the SDK writes NaN and infinities as text
        with contextlib.suppress(ValueError):
            return float(value)
    return NAN


def _events(data: bytes) -> Iterator[tuple[str, dict[str, Any], Any, float]]:
    """(kind, values, step, time) of each metrics line; torn or foreign lines skipped."""
    for raw in data.splitlines():
        try:
            doc = json.loads(raw)
            kind, values = doc.get("kind"), doc["values"]
            if kind in ("metrics", "captured") and isinstance(values, dict):
                yield kind, values, doc.get("step"), _float(doc.get("time", 0))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue


@contextlib.contextmanager
def _locked(path: Path, wait: bool) -> Iterator[bool]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


def sync(store: Store, run_id: str, wait: bool = True) -> bool:
    """Take in what the run logged since the last sync. False: another process is
    syncing (with wait=False) or the run has no data folder; what is committed stands."""
    return _sync(store, run_id, wait)[0]


def synced(store: Store, run_id: str) -> dict[str, Any]:
    """The manifest once what the run logged since the last sync is taken in, without
    waiting for a sync under way elsewhere (then: what is committed). A reader that
    calls this reads the manifest once, not once to sync and again to read."""
    doc = _sync(store, run_id, False)[1]
    return doc if doc is not None else manifest(store, run_id)


def _sync(store: Store, run_id: str, wait: bool) -> tuple[bool, dict[str, Any] | None]:
    """(sync's answer, the manifest when nothing was new: else None, read it again)."""
    data = where(store, run_id)
    doc = _manifest_in(os.path.join(data, FOLDER))
    try:  # nothing new since the last sync: no lock, no write (the common case)
        if doc.get("pos") == os.stat(os.path.join(data, "metrics.jsonl")).st_size:
            return True, doc
    except (FileNotFoundError, NotADirectoryError):
        pass
    if not os.path.isdir(data):
        return False, doc
    source = Path(data, "metrics.jsonl")
    here = Path(data, FOLDER)
    if not here.is_dir():
        makedirs(here, store.owner)
        (here / ".lock").touch()
        chown(here / ".lock", store.owner)  # a project of another user stays theirs
    with _locked(here / ".lock", wait) as got:
        if not got:
            return False, None
        _Sync(store, here, manifest(store, run_id)).run(source)
        return True, None


def rebuild(store: Store, run_id: str) -> None:
    """Throw the folder away and build it again from metrics.jsonl (fsck --repair)."""
    shutil.rmtree(folder(store, run_id), ignore_errors=True)
    sync(store, run_id)


class _Sync:
    def __init__(self, store: Store, here: Path, doc: dict[str, Any]) -> None:
        self.store, self.here = store, here
        self.pos: int = doc.get("pos", 0)
        self.series: dict[str, dict[str, Any]] = doc.get("series", {})

    def run(self, source: Path) -> None:
        self._cut_back()
        try:
            size = source.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < self.pos:  # the file was replaced by a shorter one: start over
            self.pos, self.series = 0, {}
            for p in self.here.iterdir():
                if p.name not in (".lock",):
                    p.unlink()
        changed = False
        while size > self.pos:
            with open(source, "rb") as f:
                f.seek(self.pos)
                chunk = f.read(min(_CHUNK, size - self.pos))
            cut = chunk.rfind(b"\n") + 1  # a line still being written waits
            if not cut:
                break
            self._take(chunk[:cut])
            self.pos += cut
            changed = True
        if changed or not (self.here / MANIFEST).exists():
            doc = {"version": VERSION, "pos": self.pos, "series": self.series}
            data = json.dumps(doc, sort_keys=True).encode()
            atomic_write_bytes(self.here / MANIFEST, data, self.store.owner, durable=False)

    def _cut_back(self) -> None:
        """Files longer than the manifest says hold a sync that died: cut them back."""
        for meta in self.series.values():
            n = meta["n"]
            for suffix, size in _sizes(n):
                path = self.here / f"{meta['file']}{suffix}"
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_size > size:
                        os.truncate(path, size)

    def _take(self, chunk: bytes) -> None:
        added: dict[str, array[float]] = {}
        for kind, values, step, when in _events(chunk):
            prefix = "m:" if kind == "metrics" else "c:"
            s = NAN if step is None or isinstance(step, bool) else _float(step)
            for key, value in values.items():
                name = prefix + str(key)
                meta = self.series.get(name)
                if meta is None:
                    meta = self.series[name] = {
                        "file": str(len(self.series)),
                        "n": 0,
                        "steps": True,  # every point has a step, never decreasing
                        "times": True,  # times never decrease
                        "last": [None, None],
                        # Step i is first + delta * i (while [first, delta] holds): a
                        # chart finds its points' x without reading them (issue 15).
                        "stride": [s, None] if math.isfinite(s) else None,
                    }
                pts = added.setdefault(name, array("d"))
                last_step, last_time = meta["last"]
                if math.isnan(s) or (last_step is not None and s < last_step):
                    meta["steps"] = False
                stride = meta.get("stride")  # absent from older manifests: unknown
                if stride is not None and meta["n"] + len(pts) // 3:
                    first, delta = stride
                    if delta is None:
                        stride[1] = delta = s - first
                    if s != first + delta * (meta["n"] + len(pts) // 3):
                        meta["stride"] = None
                if last_time is not None and when < last_time:
                    meta["times"] = False
                meta["last"] = [None if math.isnan(s) else s, when]
                pts.extend((s, _float(value), when))
        for name, pts in added.items():
            self._append(self.series[name], pts)

    def _append(self, meta: dict[str, Any], pts: array[float]) -> None:
        base = self.here / meta["file"]
        old = meta["n"]
        _write_at(Path(f"{base}.f64"), old * POINT, pts.tobytes(), self.store)
        new = old + len(pts) // 3
        below = values_of(pts, old)  # level 0 as summaries of single points
        for k in range(1, LEVELS + 1):
            block = FANOUT**k
            first, last = old // block, new // block
            if last == first:
                break
            # The summaries of level k-1 that the new complete blocks of level k cover.
            start = first * FANOUT
            need = array("d")
            have_from = below[0]
            if start < have_from:  # some were written by an earlier sync: read them back
                path = Path(f"{base}.L{k - 1}") if k > 1 else None
                need = _read_summaries(path, Path(f"{base}.f64"), start, have_from)
            need.extend(below[1])
            out = array("d")
            for b in range(last - first):
                out.extend(_merge(need, b * FANOUT, FANOUT))
            _write_at(Path(f"{base}.L{k}"), first * SUMMARY, out.tobytes(), self.store)
            below = (first, out)
        meta["n"] = new


def _sizes(n: int) -> list[tuple[str, int]]:
    return [(".f64", n * POINT)] + [(f".L{k}", (n // FANOUT**k) * SUMMARY) for k in range(1, 6)]


def values_of(pts: array[float], first: int) -> tuple[int, array[float]]:
    """Raw points (step, value, time) as level-0 summaries from index first."""
    out = array("d")
    for j in range(len(pts) // 3):
        v = pts[3 * j + 1]
        out.extend((first + j, v, first + j, v))
    return first, out


def _read_summaries(level: Path | None, raw: Path, start: int, end: int) -> array[float]:
    """Summaries [start, end) of a level (None: the raw points as summaries)."""
    out = array("d")
    if level is None:
        with open(raw, "rb") as f:
            f.seek(start * POINT)
            pts = array("d")
            pts.frombytes(f.read((end - start) * POINT))
        return values_of(pts, start)[1]
    with open(level, "rb") as f:
        f.seek(start * SUMMARY)
        out.frombytes(f.read((end - start) * SUMMARY))
    return out


def _merge(s: array[float], first: int, count: int) -> tuple[float, float, float, float]:
    """One summary of count summaries from position first; NaNs are left out."""
    imin = imax = s[4 * first]
    vmin, vmax = math.inf, -math.inf
    for j in range(first, first + count):
        lo, hi = s[4 * j + 1], s[4 * j + 3]
        if lo < vmin:
            imin, vmin = s[4 * j], lo
        if hi > vmax:
            imax, vmax = s[4 * j + 2], hi
    if vmin == math.inf:
        return imin, NAN, imax, NAN
    return imin, vmin, imax, vmax


def _write_at(path: Path, offset: int, data: bytes, store: Store) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)
    if store.owner is not None and offset == 0:
        chown(path, store.owner)


OLD = "series.json"  # datmo before 0.x wrote each finished run's series here, whole


def check(store: Store, run_id: str, final: bool) -> str | None:
    """What is wrong with a run's series folder, for fsck (None: nothing). final: the
    run has ended, so everything it logged should be in."""
    data = store.path("run-data", run_id)
    try:
        size = (data / "metrics.jsonl").stat().st_size
    except FileNotFoundError:
        size = 0
    doc = manifest(store, run_id)
    if not doc:
        if (data / OLD).exists():
            return "its series are in the old form (series.json)"
        return "its series are not indexed yet" if size and final else None
    if doc["pos"] > size:
        return "its series folder says more was logged than metrics.jsonl holds"
    for name, meta in doc["series"].items():
        for suffix, want in _sizes(meta["n"]):
            path = folder(store, run_id) / f"{meta['file']}{suffix}"
            have = path.stat().st_size if path.exists() else 0
            if have < want:
                return f"its series '{name[2:]}' is missing points ({path.name})"
    if final and doc["pos"] < size:
        return "its series lack lines the run logged"
    return None


def repair(store: Store, run_id: str) -> None:
    """Build the series folder again from metrics.jsonl; the old series.json goes."""
    rebuild(store, run_id)
    with contextlib.suppress(FileNotFoundError):
        (store.path("run-data", run_id) / OLD).unlink()
