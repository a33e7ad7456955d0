"""Helpers shared by the reliability tests: crashes, concurrency, full disks, bad input,
damaged stores and escapes. Each test prints its figures (trials, seeds, processes,
inputs tried, records lost) so docs/reliability.md can quote a real run."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EXCLUDED = ("cache", "lock", "index.sqlite", "index.sqlite-wal", "index.sqlite-shm")


def datmo_argv(*args: str) -> list[str]:
    """The real `datmo` executable (or `python -m datmo` when it is not on PATH)."""
    exe = shutil.which("datmo")
    return [exe, *args] if exe else [sys.executable, "-m", "datmo", *args]


def child_env(**extra: str) -> dict[str, str]:
    """The environment for datmo subprocesses: supervisors must import this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.pop("DATMO_DEBUG", None)
    env.update(extra)
    return env


def report(title: str, **figures: Any) -> None:
    """One parseable line per test: `RELIABILITY <title>: key=value ...` (pytest -s shows it)."""
    shown = " ".join(f"{k}={v}" for k, v in figures.items())
    print(f"\nRELIABILITY {title}: {shown}", flush=True)


def seeded(name: str) -> tuple[int, random.Random]:
    """A generator seeded from DATMO_CRASH_SEED, or a fresh seed that the test prints."""
    text = os.environ.get("DATMO_CRASH_SEED")
    seed = int(text) if text else random.SystemRandom().randrange(1 << 32)
    print(f"\n{name}: seed {seed} (rerun with DATMO_CRASH_SEED={seed})", flush=True)
    return seed, random.Random(seed)


# -- looking at a project -----------------------------------------------------------------


def store_digest(root: Path) -> str:
    """A hash of every name and byte under .datmo except caches, the lock and the index."""
    h = hashlib.sha256()
    top = root / ".datmo"
    for folder, dirs, files in os.walk(top):
        rel_folder = os.path.relpath(folder, top)
        if rel_folder == ".":
            dirs[:] = [d for d in dirs if d not in EXCLUDED]
            files = [f for f in files if f not in EXCLUDED]
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(folder, name)
            h.update(os.path.relpath(full, top).encode("utf-8", "surrogateescape") + b"\0")
            if os.path.islink(full):
                h.update(b"L" + os.fsencode(os.readlink(full)))
            else:
                with open(full, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


def tree_contents(root: Path) -> dict[str, Any]:
    """path -> bytes, or ('link', target), for everything outside .datmo."""
    out: dict[str, Any] = {}
    for folder, dirs, files in os.walk(root):
        if Path(folder) == root:
            dirs[:] = [d for d in dirs if d != ".datmo"]
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            full = os.path.join(folder, name)
            rel = os.path.relpath(full, root)
            if os.path.islink(full):
                out[rel] = ("link", os.readlink(full))
            else:
                out[rel] = Path(full).read_bytes()
    return out


def disk_usage(path: Path) -> int:
    """Bytes allocated under path, as `du` counts them (links not followed)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return total


def context(root: Path) -> Any:
    from datmo.core.storage.project import ProjectContext
    from datmo.core.storage.store import Store

    return ProjectContext(root, Store(root))


def fsck_problems(root: Path, repair: bool = False) -> tuple[list[str], list[str]]:
    """(problems, repaired) from the fsck controller, in-process (no start-up cost)."""
    from datmo.core.controller import fsck

    r = fsck.check(context(root), repair)
    return r.problems, r.repaired


def snapshot_ids(root: Path) -> list[str]:
    d = root / ".datmo" / "snapshots"
    return sorted(n[:-5] for n in os.listdir(d) if n.endswith(".json") and not n.startswith("."))


def run_docs(root: Path) -> list[dict[str, Any]]:
    d = root / ".datmo" / "runs"
    return [
        json.loads((d / n).read_text())
        for n in sorted(os.listdir(d))
        if n.endswith(".json") and not n.startswith(".")
    ]


def snapshot_contents(root: Path, snapshot_id: str, scratch: Path) -> dict[str, Any]:
    """What a snapshot holds, written out by `checkout --to` (in-process) and read back."""
    from datmo.core.controller import export

    dest = scratch / f"export-{snapshot_id[:12]}-{time.monotonic_ns()}"
    export.export(context(root), snapshot_id, dest, [], root)
    try:
        return tree_contents(dest)
    finally:
        shutil.rmtree(dest, ignore_errors=True)


# -- processes ------------------------------------------------------------------------------


def forked_datmo(args: list[str], cwd: Path) -> int:
    """Run `datmo ARGS` in a forked child of this (already importing) process; its pid.

    The kill points then spread over datmo's own work rather than Python's start-up."""
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        os.setpgid(0, 0)
        os.chdir(cwd)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (the child exits)
        from datmo.cli.main import main

        try:
            main(args)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    finally:
        os._exit(code)


def reap(pid: int, timeout: float = 30.0) -> int | None:
    """Wait for a child; its exit status (negative: signal), None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.002)


def kill_after(pid: int, delay: float) -> bool:
    """SIGKILL pid after delay seconds unless it exited first; True when the kill landed."""
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
        time.sleep(0.001)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return True
    return False


def cmdlines() -> Iterator[tuple[int, list[str]]]:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        yield int(entry), [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def supervisors(root: Path) -> list[int]:
    """Live supervisor processes of this project (zombies excluded)."""
    from datmo.core.task.process import start_time

    found = []
    for pid, argv in cmdlines():
        if "datmo.cli.supervise" not in argv or not start_time(pid):
            continue
        try:  # an early supervisor (datmo.core.task.prespawn) names no folder: it runs in it
            here = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            here = None
        if str(root) in argv or (here is not None and here.is_relative_to(root)):
            found.append(pid)
    return found


def processes_with(marker: str) -> list[int]:
    from datmo.core.task.process import start_time

    return [pid for pid, argv in cmdlines() if marker in " ".join(argv) and start_time(pid)]


def wait_until(check: Callable[[], Any], timeout: float, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# -- what a failure looks like ------------------------------------------------------------


def failure_problems(exit_code: int, stdout: str, stderr: str) -> list[str]:
    """Why a failed command's output breaks the error contract ([] when it keeps it).

    The contract: no traceback, no 'unexpected error', a non-zero exit, and stderr is one
    line starting 'datmo: error:' (or click's own usage error, exit code 2)."""
    bad = []
    text = stdout + stderr
    if "Traceback" in text:
        bad.append("traceback")
    if "unexpected error" in text:
        bad.append("unexpected error")
    if exit_code == 0:
        bad.append("exit code 0")
    usage = exit_code == 2 and "Usage:" in stderr and "Error:" in stderr
    if not usage:
        lines = stderr.splitlines()
        if len(lines) != 1 or not lines[0].startswith("datmo: error: "):
            bad.append(f"stderr is not one 'datmo: error:' line: {stderr[-300:]!r}")
    return bad
