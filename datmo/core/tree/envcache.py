"""The cache behind a snapshot's requirements and platform facts (datmo.core.tree.envinfo).

Per .py file: its stamp and the modules it imports, so only changed files are parsed
again; the requirements and platform facts they gave, keyed by the imports and by a
fingerprint of the installed packages; and a small summary keyed by the content of
every .py file, so an unchanged project never reads the per-file part at all.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import stat
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datmo.core.storage.fsutil import Owner, atomic_write_bytes
from datmo.core.tree import envinfo
from datmo.core.util import probe

_CACHE_VERSION = 2


def _read(path: Path) -> dict[str, Any] | None:
    """A cache file of this version, or None (missing, corrupt or of another version)."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION:
        return None
    return data


# A file changed again within the filesystem's timestamp granularity after we read
# it would keep its (size, mtime) key; like git's "racy clean" check, files touched
# this recently are parsed but not trusted from the cache. 2 s covers FAT and HFS+.
_RACY_NS = 2_000_000_000


def packages_fingerprint(root: Path | None = None) -> str:
    """Cheap stand-in for 'the installed packages are the same' (probe.package_folders)."""
    return _digest(probe.package_folders(None if root is None else os.fspath(root)))


def _digest(parts: object) -> str:
    from blake3 import blake3  # loaded for the object store anyway

    return blake3(json.dumps(parts, sort_keys=True).encode()).hexdigest()


class EnvInfoCache:
    """A JSON cache of per-file imports, the requirements they give, and platform facts.

    Beside it, a small summary keyed by the content of every .py file (the caller's
    content key: the code's git tree and the digests of .py files stored as files):
    when neither that nor the installed packages changed, the answer comes from the
    summary and the per-file part, 100,000 entries in a big project, is never read.
    """

    def __init__(self, path: Path, owner: Owner | None = None) -> None:
        self.path = path
        self.summary_path = path.with_name(path.name + ".summary")
        # Small, apart from the per-file part: an incremental capture reads only this.
        self.answers_path = path.with_name(path.name + ".answers")
        self.owner = owner
        self._files: dict[str, list[object]] = {}
        self._requirements: dict[str, str] = {}
        self._platform: dict[str, object] = {}
        self._loaded = False
        self._answers_loaded = False
        self._dirty = False
        self._answers_dirty = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        data = _read(self.path)
        if data is None:
            return  # missing, corrupt or older: start empty, the next save repairs it
        files = data.get("files")
        if isinstance(files, dict):
            self._files = files

    def _load_answers(self) -> None:
        if self._answers_loaded:
            return
        self._answers_loaded = True
        data = _read(self.answers_path)
        if data is None:
            return
        reqs, plat = data.get("requirements"), data.get("platform")
        if isinstance(reqs, dict) and isinstance(reqs.get("text"), str):
            self._requirements = reqs
        if isinstance(plat, dict) and isinstance(plat.get("facts"), dict):
            self._platform = plat

    def _summary_key(self, root: Path, content_key: str) -> str:
        return _digest([content_key, packages_fingerprint(root), probe.machine()])

    def _from_summary(self, key: str) -> tuple[str, dict[str, object]] | None:
        data = _read(self.summary_path)
        if (
            data is not None
            and data.get("key") == key
            and isinstance(data.get("requirements"), str)
            and isinstance(data.get("facts"), dict)
        ):
            return data["requirements"], data["facts"]
        return None

    def cached(self, root: Path, content_key: str) -> tuple[str, dict[str, object]] | None:
        """compute_keyed's answer if the summary has it (nothing is computed)."""
        return self._from_summary(self._summary_key(root, content_key))

    def compute_keyed(
        self, root: Path, py_files: Sequence[tuple[str, os.stat_result]], content_key: str
    ) -> tuple[str, dict[str, object]]:
        """compute, answered from the summary when content_key and the packages match."""
        key = self._summary_key(root, content_key)
        found = self._from_summary(key)
        if found is not None:
            return found
        text, facts = self.compute(root, py_files)
        self.keyed(root, content_key, (text, facts))
        return text, copy.deepcopy(facts)

    def compute(
        self, root: Path, py_files: Sequence[tuple[str, os.stat_result]]
    ) -> tuple[str, dict[str, object]]:
        """(requirements.txt, platform facts) for the project's .py files (relpath, lstat).

        Only files whose (size, mtime, ctime, inode) changed are parsed again; files
        changed in the last 2 s and symlinks are parsed every time.
        """
        imports: set[str] = set()
        for names in self.file_imports(root, py_files).values():
            imports.update(names)
        top, nested = envinfo.local_module_names(rel for rel, _ in py_files)
        return self.from_imports(root, imports, top, nested)

    def file_imports(
        self, root: Path, py_files: Sequence[tuple[str, os.stat_result]]
    ) -> dict[str, list[str]]:
        """The modules each file imports, from the cache where its stamp is unchanged."""
        self._load()
        racy_after = time.time_ns() - _RACY_NS
        files: dict[str, list[object]] = {}
        out: dict[str, list[str]] = {}
        top_dir = os.fspath(root)
        for rel, st in py_files:
            stamp: list[object] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
            entry = self._files.get(rel)
            if isinstance(entry, list) and len(entry) == 2 and entry[0] == stamp:
                names = entry[1]
                if isinstance(names, list):
                    out[rel] = names
                    files[rel] = entry
                    continue
            self._dirty = True
            try:
                with open(os.path.join(top_dir, rel), "rb") as f:
                    found = sorted(envinfo.imports_of(f.read()))
            except OSError:
                continue  # vanished or unreadable since the scan; not cached, retried next time
            out[rel] = found
            # An lstat of a symlink does not change when its target is edited.
            if max(st.st_mtime_ns, st.st_ctime_ns) < racy_after and not stat.S_ISLNK(st.st_mode):
                files[rel] = [stamp, found]
        if files.keys() != self._files.keys():
            self._dirty = True
        self._files = files
        self._save()
        return out

    def from_imports(
        self, root: Path, imports: set[str], top: set[str], nested: set[str]
    ) -> tuple[str, dict[str, object]]:
        """(requirements.txt, platform facts) for these imports and local module names."""
        self._load_answers()
        fingerprint = packages_fingerprint(root)
        req_key = _digest([sorted(imports), sorted(top), sorted(nested), fingerprint])
        if self._requirements.get("key") != req_key:
            text = envinfo.requirements_for(imports, top, nested)
            self._requirements = {"key": req_key, "text": text}
            self._answers_dirty = True

        plat_key = _digest([fingerprint, probe.machine()])
        if self._platform.get("key") != plat_key:
            self._platform = {"key": plat_key, "facts": envinfo.platform_facts()}
            self._answers_dirty = True

        self._save()
        facts = self._platform["facts"]
        assert isinstance(facts, dict)
        return self._requirements["text"], copy.deepcopy(facts)

    def keyed(self, root: Path, content_key: str, answer: tuple[str, dict[str, object]]) -> None:
        """Remember answer as the summary for content_key (see compute_keyed)."""
        key = self._summary_key(root, content_key)
        text, facts = answer
        blob = json.dumps(
            {"version": _CACHE_VERSION, "key": key, "requirements": text, "facts": facts},
            sort_keys=True,
        ).encode()
        with contextlib.suppress(OSError):
            atomic_write_bytes(self.summary_path, blob, self.owner, durable=False)

    def _save(self) -> None:
        # A cache that cannot be written only costs time; the snapshot must not fail.
        if self._dirty:
            data = {"version": _CACHE_VERSION, "files": self._files}
            blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
            with contextlib.suppress(OSError):
                atomic_write_bytes(self.path, blob, self.owner, durable=False)
            self._dirty = False
        if self._answers_dirty:
            answers = {
                "version": _CACHE_VERSION,
                "requirements": self._requirements,
                "platform": self._platform,
            }
            blob = json.dumps(answers, sort_keys=True, separators=(",", ":")).encode()
            with contextlib.suppress(OSError):
                atomic_write_bytes(self.answers_path, blob, self.owner, durable=False)
            self._answers_dirty = False
