"""The answer of a re-snapshot that found nothing changed, kept with what it depended on.

`datmo snapshot create -m MSG` in a project where nothing changed returns the
current snapshot. Working that out takes a few milliseconds of checks, but loading
datmo's records and the standard library behind them (typing, dataclasses,
pathlib, json) takes tens: scripts that snapshot after every epoch paid mostly for
start-up. So when create() finds nothing changed, it also writes its answer down
(`.datmo/cache/unchanged`) with the lstat signature of every file that answer
was drawn from, each taken *before* create read it:
  - the project record (size threshold, active environment), the checkout journal
    (absent), config.json and stats.json, the current-snapshot pointer and the
    current snapshot's record;
  - the tree stamp and the requirements summary (capture.py), the built-in
    environment's cached id and its record, a root Dockerfile (absent);
  - the objects the snapshot needs (manifest, requirements, stored files, and the
    code's git object: its loose file or the pack indexes);
with the installed packages' fingerprint, the machine (interpreter, boot, kernel)
and the built-in template's stamp. The console script (cli/quick.py) takes them
again before loading anything else; when every one matches and the tree stamp
still holds for the working tree, it prints the same answer. The first difference
means the usual path.

Why that is safe: a signature was taken before its file was read, so a later change
shows; datmo replaces records and caches by rename (a new inode), and a
signature whose mtime or ctime is racy against the moment it was taken (probe.is_racy)
keeps the answer from being written at all. A root Dockerfile is not covered: the
environment's id then depends on whatever its COPY lines name, globs included.

Start-up path: at run time this module imports only `os`, `time` and the
equally lean probe, treestamp and cachefile.
"""

from __future__ import annotations

import os
import time

from datmo import __version__
from datmo.core.storage import cachefile
from datmo.core.tree.stamp import TreeStamp
from datmo.core.util import probe
from datmo.errors import DatmoError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from datmo.core.entity.snapshot import Snapshot
    from datmo.core.storage.project import ProjectContext

FORMAT_VERSION = 1
_MAGIC = b"DATMOUC\n"
NAME = "unchanged"  # in .datmo/cache
_KEY = f"datmo {__version__}"


class Watch:
    """Signatures of what one create() reads, taken before it reads each."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.started_ns = time.time_ns()
        self.files: list[tuple[str, probe.Signature | None]] = []
        self.packages: list[str] = []
        self.machine: list[str] = []
        self.template: tuple[str, str, str] | None = None  # folder, relative to, stamp
        self.racy = False

    def add(self, path: str | os.PathLike[str]) -> probe.Signature | None:
        """Sign a file now (None: absent); a change from here on voids the answer."""
        full = os.fspath(path)
        sig = probe.signature(full)
        if sig is not None and (
            probe.is_racy(sig[2], self.started_ns) or probe.is_racy(sig[3], self.started_ns)
        ):
            self.racy = True  # changed too recently for its times to show the next change
        self.files.append((full, sig))
        return sig


def save(ctx: ProjectContext, watch: Watch, snap: Snapshot, skipped: list[list[str]]) -> None:
    """Keep create()'s answer, `snap` unchanged, for the next call with its words. Only a
    shortcut: a failure to keep it is no failure of the create that found it."""
    from datmo.core.tree import capture
    from datmo.core.tree.stamp import stamp_key

    store = ctx.store
    try:
        key = stamp_key(ctx.info.file_threshold)
        stamp_path = os.fspath(capture.stamp_path(ctx))
        stamp = TreeStamp.load(stamp_path, key)
        code = store.git.object_files(snap.code_id)
        if watch.racy or stamp is None or code is None:
            store.remove(f"cache/{NAME}")
            return
        needed = [snap.files_id, *stamp.outcome.file_digests]
        if snap.requirements_id:
            needed.append(snap.requirements_id)
        witnesses = [os.fspath(p) for p in (*map(store.objects.path, needed), *code)]
        files = [*watch.files, *((p, probe.signature(p)) for p in witnesses)]
        words = (snap.message, snap.label)
        env = (watch.packages, watch.machine, watch.template)
        data = (_KEY, watch.root, *words, snap.id, skipped, stamp_path, key, files, env)
        cachefile.write(store.path("cache", NAME), _MAGIC, FORMAT_VERSION, data, store.owner)
    except (OSError, ValueError, DatmoError):  # ValueError: a bad id in a hand-edited record
        pass


def answer(cwd: str, message: str, label: str | None) -> tuple[str, list[list[str]]] | None:
    """(current snapshot id, what was skipped) if a create with these words would, provably,
    return the current snapshot unchanged; None when that is not known here."""
    root = probe.find_root(cwd)
    if root is None:
        return None
    kept = os.path.join(root, probe.DATMO_DIR, "cache", NAME)
    data = cachefile.read(kept, _MAGIC, FORMAT_VERSION)
    try:
        key, kept_root, *words, sid, skipped, stamp_path, stamp_key, files, env = data
        packages, machine, template = env
        texts = [sid, stamp_path, *(template or ())]  # template: None or 3 strings
    except (TypeError, ValueError):
        return None  # none kept, or not the shape written
    if (key, kept_root, words) != (_KEY, root, [message, label]):
        return None
    # Checked, not trusted: an int where a path belongs would name a file descriptor.
    if not all(isinstance(t, str) for t in texts) or not _are_notes(skipped):
        return None
    try:
        if any(probe.signature(path) != sig for path, sig in files):
            return None
        if probe.package_folders(root) != packages or probe.machine() != machine:
            return None
        if template is not None and probe.folder_stamp(template[0], template[1]) != template[2]:
            return None
        stamp = TreeStamp.load(stamp_path, stamp_key)
        if stamp is None or not stamp.holds(root):
            return None
    except (OSError, TypeError, ValueError):  # TypeError, ValueError: not the shape written
        return None
    return sid, skipped


def _are_notes(value: object) -> bool:
    """A list of [path, reason] pairs: what a capture left out."""
    return isinstance(value, list) and all(
        isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)
        for item in value
    )
