"""Tree stamp: proof that the project has not changed since its last capture.

A re-snapshot of an unchanged 100,000-file project would otherwise spend most of
its time on work that cannot change the answer: judging every name against the
ignore rules, looking every file up in the stat cache, rebuilding the manifest.
The stamp keeps what the last capture of the project saw (every listed folder's
names, which of them are folders, each captured file's lstat) with what that
capture produced. When every folder lists the same names and every file stats
the same, a capture would produce the same result, so that result is reused.

Why that holds:
- New, deleted and renamed paths change a folder's names. Folders are listed
  again rather than judged by their mtime, which some filesystems do not update.
- Content changes move mtime and ctime (ctime cannot be set by a user). A change
  in the same timestamp tick as the capture's walk is the racy case: a stamp is
  only written when no file's mtime or ctime is racy against the walk's start
  (statcache.is_racy: 20 ms, 2 s for whole-second times; ctime too, unlike git: a
  write then a utime back in one tick stays seen).
- The rules see whether a name is a folder, so every name left out is checked to
  still be a folder, or still not be one; virtual environments are detected again.
- The rules come from .gitignore files and .datmoignore, which are captured and so
  watched (the walk marks a scan unstable when one is left out), and from datmo's
  version and the size threshold, which are the stamp's key.
Anything else (no stamp, another key, the first difference) means a full capture.

On disk in cachefile.py's framing, like the stat cache; the numbers in five int64
columns, one row per name: mode (_DIR / _NOT_DIR for a name not captured itself),
size, mtime_ns, ctime_ns, inode.

Loading and checking a stamp is on the start-up path of a re-snapshot
(unchanged.py), so this module imports only what `os` needs: no typing,
dataclasses or pathlib at run time.
"""

from __future__ import annotations

import os
import stat
from array import array

from datmo import __version__
from datmo.core.storage import cachefile
from datmo.core.tree.forked import in_children as _in_children
from datmo.core.tree.forked import parts as _parts
from datmo.core.tree.forked import workers as _workers
from datmo.core.util.probe import COARSE_NS, is_racy, is_venv

TYPE_CHECKING = False
if TYPE_CHECKING:
    from datmo.core.storage.fsutil import Owner
    from datmo.core.tree.scan import Entry, Listed, ScanResult

FORMAT_VERSION = 1
_MAGIC = b"DATMOTS\n"
_DIR, _NOT_DIR = -1, -2  # the mode column of a name that is not captured itself
_IFMT, _IFDIR = 0o170000, stat.S_IFDIR
_INO = (1 << 63) - 1  # inode numbers are unsigned 64-bit; the low 63 bits will do
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Outcome:
    """What a capture of the project produced, apart from the environment."""

    __slots__ = (
        *("code_id", "files_id", "code_count", "file_count", "total_bytes"),
        *("skipped", "content_key", "file_digests"),
    )

    def __init__(
        self,
        code_id: str,
        files_id: str,
        code_count: int,
        file_count: int,
        total_bytes: int,
        skipped: list[list[str]],
        content_key: str,  # what the requirements summary is keyed by
        file_digests: list[str],  # the stored files' objects, checked to still exist
    ) -> None:
        self.code_id, self.files_id = code_id, files_id
        self.code_count, self.file_count, self.total_bytes = code_count, file_count, total_bytes
        self.skipped, self.content_key, self.file_digests = skipped, content_key, file_digests


class _Mark:
    """Stands in for the lstat of a name that is not captured itself."""

    __slots__ = ("st_mode",)
    st_size = st_mtime_ns = st_ctime_ns = st_ino = 0

    def __init__(self, mode: int) -> None:
        self.st_mode = mode


_DIR_MARK, _NOT_DIR_MARK = _Mark(_DIR), _Mark(_NOT_DIR)


class TreeStamp:
    def __init__(
        self,
        key: str,
        outcome: Outcome,
        folders: list[str],
        names: list[list[str]],
        cols: tuple[array[int], ...],
        venvs: list[str],
    ) -> None:
        self.key = key
        self.outcome = outcome
        self.folders = folders  # relative paths, "" for the root
        self.names = names  # each folder's names, sorted
        self.cols = cols  # per name, folder after folder: mode, size, mtime, ctime, inode
        self.venvs = venvs

    @classmethod
    def of(cls, scan: ScanResult, outcome: Outcome, key: str, started_ns: int) -> TreeStamp | None:
        """The stamp of a finished capture; None when the walk saw something it cannot vouch
        for, or a file too new to trust (see the module docstring)."""
        if not scan.stable:
            return None
        folders, names = [], []
        cols = tuple(array("q") for _ in range(5))
        for rel, listed, dirs, entries in scan.folders:
            for col, part in zip(cols, _rows(listed, dirs, entries), strict=True):
                col.extend(part)
            folders.append(rel)
            names.append(listed)
        if any(is_racy(t, started_ns) for col in cols[2:4] for t in _recent(col, started_ns)):
            return None
        return cls(key, outcome, folders, names, cols, list(scan.venvs))

    def spliced(
        self, replaced: dict[int, Listed], outcome: Outcome, started_ns: int
    ) -> TreeStamp | None:
        """This stamp with the folders an incremental capture redid replaced by their new
        listings; None when one of their files is too new to trust (as in of())."""
        names = list(self.names)
        pieces: list[tuple[array[int], ...]] = []
        new_rows: list[tuple[array[int], ...]] = []
        i = 0
        for k, listed in enumerate(self.names):
            j = i + len(listed)
            if k in replaced:
                _, now, dirs, entries = replaced[k]
                names[k] = now
                rows = _rows(now, dirs, entries)
                pieces.append(rows)
                new_rows.append(rows)
            else:
                pieces.append(tuple(c[i:j] for c in self.cols))
            i = j
        cols = tuple(array("q") for _ in range(5))
        for piece in pieces:
            for col, part in zip(cols, piece, strict=True):
                col.extend(part)
        for rows in new_rows:
            if any(is_racy(t, started_ns) for col in rows[2:4] for t in _recent(col, started_ns)):
                return None
        return TreeStamp(self.key, outcome, self.folders, names, cols, self.venvs)

    def holds(self, top: str) -> bool:
        """Whether the tree under `top` is, provably, as this stamp saw it."""
        try:
            return self._check_all(top) and all(self._still_venv(top, r) for r in self.venvs)
        except OSError:
            return False  # gone, unreadable, replaced by a link: a full capture will say

    def _check_all(self, top: str) -> bool:
        """All folders; a big tree in parts, one per core, as git's preload-index does:
        the time is in lstat calls, which a single process makes one at a time."""
        parts = _parts(self.names, _workers(len(self.cols[0])))
        if len(parts) == 1:
            return self._check(top, *parts[0])
        children: list[int] = []
        try:
            for part in parts[1:]:
                pid = os.fork()
                if pid == 0:  # the child checks its part and reports by its exit status
                    ok = False
                    try:
                        ok = self._check(top, *part)
                    except BaseException:  # Ctrl-C included: report a failure, just exit
                        pass
                    finally:
                        os._exit(0 if ok else 1)
                children.append(pid)
            ok = self._check(top, *parts[0])
            while ok and children:
                _, status = os.waitpid(children.pop(), 0)
                ok = os.waitstatus_to_exitcode(status) == 0
            return ok
        finally:
            for pid in children:  # an answer is known: the rest need not finish
                try:
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                except OSError:
                    pass

    def _check(self, top: str, first: int, last: int, i: int) -> bool:
        """Folders first..last-1, whose names start at name number i."""
        # Once per name of a 100,000-file tree: kept to one lstat and a few compares.
        modes, sizes, mtimes, ctimes, inos = self.cols
        lstat, listdir = os.lstat, os.listdir
        for rel, names in zip(self.folders[first:last], self.names[first:last], strict=True):
            # The root may be a symlink (the user named it); nothing below it may.
            if rel:
                fd = os.open(f"{top}/{rel}", _DIR_FLAGS)
            else:
                fd = os.open(top, _DIR_FLAGS & ~os.O_NOFOLLOW)
            try:
                now = listdir(fd)
                now.sort()
                if now != names:
                    return False
                j = i + len(names)
                for name, mode, size, mtime, ctime, ino in zip(
                    names, modes[i:j], sizes[i:j], mtimes[i:j], ctimes[i:j], inos[i:j], strict=True
                ):
                    st = lstat(name, dir_fd=fd)
                    if mode < 0:
                        if (st.st_mode & _IFMT == _IFDIR) != (mode == _DIR):
                            return False
                    elif (
                        st.st_mtime_ns != mtime
                        or st.st_ctime_ns != ctime
                        or st.st_size != size
                        or st.st_mode != mode
                        or st.st_ino & _INO != ino
                    ):
                        return False
                i = j
            finally:
                os.close(fd)
        return True

    def changed_folders(self, top: str) -> list[int] | None:
        """The indexes of the folders that list other names now, or hold a file that stats
        differently; [] when the stamp holds. None when that cannot be told folder by
        folder (a folder gone or unreadable, a virtual environment no longer one): a full
        capture must look. Unlike holds(), every folder is checked: an incremental
        capture (update.py) redoes exactly these."""
        try:
            if not all(self._still_venv(top, r) for r in self.venvs):
                return None
            parts = _parts(self.names, _workers(len(self.cols[0])))
            if len(parts) == 1:
                return self._changed(top, *parts[0])
            return _in_children(parts, lambda part: self._changed(top, *part))
        except OSError:
            return None

    def _changed(self, top: str, first: int, last: int, i: int) -> list[int]:
        changed = []
        for k in range(first, last):
            j = i + len(self.names[k])
            if not self._check(top, k, k + 1, i):
                changed.append(k)
            i = j
        return changed

    def _still_venv(self, top: str, rel: str) -> bool:
        fd = os.open(f"{top}/{rel}", _DIR_FLAGS)
        try:
            return is_venv(fd, os.listdir(fd))
        finally:
            os.close(fd)

    # -- on disk ---------------------------------------------------------------
    def save(self, path: os.PathLike[str], owner: Owner | None) -> None:
        o = self.outcome
        data = (
            self.key,
            (o.code_id, o.files_id, o.code_count, o.file_count, o.total_bytes),
            (o.skipped, o.content_key, o.file_digests),
            self.folders,
            self.names,
            [c.tobytes() for c in self.cols],
            self.venvs,
        )
        cachefile.write(path, _MAGIC, FORMAT_VERSION, data, owner)

    @classmethod
    def load(cls, path: str | os.PathLike[str], key: str) -> TreeStamp | None:
        """The stamp at path if it has this key; None if missing, damaged or another key."""
        data = cachefile.read(path, _MAGIC, FORMAT_VERSION)
        if data is None:
            return None
        try:
            stamp_key, numbers, lists, folders, names, raw_cols, venvs = data
            if stamp_key != key:
                return None
            cols = tuple(array("q") for _ in range(5))
            for col, raw in zip(cols, raw_cols, strict=True):
                col.frombytes(raw)
            count = sum(map(len, names))
            if len(folders) != len(names) or any(len(c) != count for c in cols):
                return None
            return cls(key, Outcome(*numbers, *lists), folders, names, cols, venvs)
        except Exception:  # not the shape written: a buggy writer
            return None


def row(st: os.stat_result) -> tuple[int, ...]:
    """A captured file's row as the stamp keeps it: mode, size, mtime, ctime, inode."""
    return (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino & _INO)


def _rows(listed: list[str], dirs: list[str], entries: list[Entry]) -> tuple[array[int], ...]:
    """A folder's rows: each name's lstat, or a mark for a name not captured itself."""
    flat: list[os.stat_result | _Mark]
    if not dirs and len(entries) == len(listed):
        flat = [e.st for e in entries]  # the usual folder: files only, all captured
    else:
        is_dir, sts = set(dirs), {e.path.rpartition("/")[2]: e.st for e in entries}
        flat = [sts.get(n) or (_DIR_MARK if n in is_dir else _NOT_DIR_MARK) for n in listed]
    return (
        array("q", [st.st_mode for st in flat]),
        array("q", [st.st_size for st in flat]),
        array("q", [st.st_mtime_ns for st in flat]),
        array("q", [st.st_ctime_ns for st in flat]),
        array("q", [st.st_ino & _INO for st in flat]),
    )


def _recent(times: array[int], since_ns: int) -> list[int]:
    """The times that may be racy: the few from the last seconds, found in C speed."""
    newest = max(times, default=0)
    if newest < since_ns - COARSE_NS:
        return []
    return [t for t in times if t >= since_ns - COARSE_NS]


def stamp_key(threshold: int) -> str:
    """What the stamp's outcome depends on besides the tree itself."""
    return f"datmo {__version__} threshold {threshold}"
