"""What a local task runs with: the `python3` on its PATH, its version and packages.

Asked in a process of its own that runs beside the task (a run never waits for it), and
kept in `.datmo/cache/local-python` with what the answer depends on: the interpreter
(its path and stat) and the variables that shape its `sys.path`, plus the mtime of
every folder on that path. Installing or removing a package changes its folder's
mtime, so a kept answer is used only while every folder is as it was; one whose
folders changed too recently to tell (the racy-timestamp rule) is not kept. A queue
worker's runs then cost no Python start-up each for it, which on a 2-core machine
running four at a time is most of what lies between one run's end and the next's start.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from datmo.core.storage import cachefile
from datmo.core.storage.fsutil import Owner
from datmo.core.util.probe import is_racy

NAME = "local-python"
_MAGIC, _VERSION = b"DMPYPRB\0", 1
_KEEP = 16  # interpreters remembered
# Variables that change which folders a Python searches for packages.
_SHAPING = ("PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONNOUSERSITE", "HOME")

_CODE = (
    "import json, os, platform, sys, importlib.metadata as m\n"
    "sys.path[:] = [p for p in sys.path if p]\n"  # not the folder it runs in
    "dirs = [(p, os.stat(p).st_mtime_ns) for p in sys.path if os.path.isdir(p)]\n"
    "print(json.dumps({'python': platform.python_version(), 'executable': sys.executable,"
    " 'packages': sorted({f\"{d.metadata['Name']}=={d.version}\" for d in m.distributions()"
    " if d.metadata['Name']}), 'dirs': dirs}))\n"
)


def key(env: dict[str, str]) -> str | None:
    """What the answer depends on besides folder mtimes; None: no python3 on PATH."""
    found = shutil.which("python3", path=env.get("PATH", os.defpath))
    if found is None:
        return None
    real = os.path.realpath(found)
    try:
        st = os.stat(real)
    except OSError:
        return None
    parts = [real, str(st.st_mtime_ns), str(st.st_ino), *(env.get(v, "") for v in _SHAPING)]
    return "\0".join(parts)


def _unchanged(dirs: list[list[Any]]) -> bool:
    for path, mtime in dirs:
        try:
            if os.stat(path).st_mtime_ns != mtime:
                return False
        except OSError:
            return False
    return True


class Probe:
    """The facts for a local run's record: kept ones at once, or a probe beside the task."""

    def __init__(
        self, env: dict[str, str], cwd: Path, cache: Path | None, owner: Owner | None
    ) -> None:
        self.owner = owner
        self.facts: dict[str, Any] = {"executor_python": sys.version.split()[0]}
        self.proc: subprocess.Popen[str] | None = None
        self.path = cache / NAME if cache is not None else None
        self.key = key(env)
        if self.key is None:
            self.facts["python"] = None  # no python3 on PATH: the task may not be Python
            return
        kept = self._kept()
        if kept is not None:
            self.facts.update(kept)
            return
        self.started_ns = time.time_ns()
        try:
            self.proc = subprocess.Popen(
                ["python3", "-c", _CODE],
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        except OSError:
            self.facts["python"] = None

    def done(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def result(self) -> dict[str, Any]:
        if self.proc is None:
            return self.facts
        try:
            out, _ = self.proc.communicate(timeout=30)
            found = json.loads(out)
            dirs = found.pop("dirs")
            self.facts.update(found)
            self._keep(found, dirs)
        except (subprocess.SubprocessError, ValueError, KeyError, TypeError):
            self.proc.kill()
            self.proc.wait()
            self.facts["python"] = None
        return self.facts

    def _entries(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        got = cachefile.read(self.path, _MAGIC, _VERSION)
        return got if isinstance(got, dict) else {}

    def _kept(self) -> dict[str, Any] | None:
        entry = self._entries().get(self.key or "")
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], dict)):
            return None
        facts, dirs = entry
        try:
            return facts if _unchanged(dirs) else None
        except (TypeError, ValueError):  # a damaged entry: probe again
            return None

    def _keep(self, facts: dict[str, Any], dirs: list[list[Any]]) -> None:
        if self.path is None or self.key is None:
            return
        if any(is_racy(int(mtime), self.started_ns) for _, mtime in dirs):
            return  # a folder changed just now: an install may still be under way
        entries = self._entries()
        entries.pop(self.key, None)
        entries[self.key] = [facts, [list(d) for d in dirs]]
        while len(entries) > _KEEP:
            entries.pop(next(iter(entries)))
        cachefile.write(self.path, _MAGIC, _VERSION, entries, self.owner)
