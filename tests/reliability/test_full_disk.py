"""A project on a small filesystem that fills up (a tmpfs with a size cap, as root).

A snapshot that does not fit fails with one clear line and a non-zero exit, and the
store stays intact: fsck is clean and earlier snapshots still check out."""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reliability import (
    child_env,
    datmo_argv,
    failure_problems,
    fsck_problems,
    kill_all,
    processes_with,
    report,
    run_docs,
    snapshot_contents,
    snapshot_ids,
    supervisors,
    tree_contents,
    wait_until,
)

MiB = 1 << 20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """mount(size) -> an empty folder on a tmpfs of that size; unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        kill_all(processes_with(str(where)))
        for _ in range(50):
            if subprocess.run(["umount", str(where)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path, size: int) -> int:
    """Write up to size bytes to path; stop quietly when the disk is full. Bytes written."""
    written = 0
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        try:
            while written < size:
                chunk = block[: min(MiB, size - written)]
                f.write(chunk)
                f.flush()
                written += len(chunk)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
    return written


def project_on(disk: Path, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> Path:
    root = disk / "proj"
    root.mkdir()
    monkeypatch.chdir(root)
    assert cli("init", "--name", "small").exit_code == 0
    return root


def clean_failure(r: Any) -> None:
    problems = failure_problems(r.exit_code, r.stdout, r.stderr)
    assert not problems, (problems, r.output)
    assert "disk" in r.stderr or "space" in r.stderr, r.stderr


def earlier_snapshots_check_out(root: Path, expected: dict[str, Any], scratch: Path) -> None:
    for sid, want in expected.items():
        assert snapshot_contents(root, sid, scratch) == want, f"snapshot {sid[:8]} changed"


def test_snapshot_of_a_file_bigger_than_the_disk(
    small_disk: Callable[[str], Path],
    cli: Callable[..., Any],
    tree: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = project_on(small_disk("8m"), cli, monkeypatch)
    tree(root, {"train.py": "print('training')\n", "config.json": '{"lr": 0.1}'})
    first = cli("snapshot", "create", "-m", "before the disk filled up")
    assert first.exit_code == 0, f"an 8 MiB disk cannot hold a two-file snapshot: {first.output}"
    expected = {first.stdout.strip(): tree_contents(root)}
    wrote = fill(root / "weights.bin", 20 * MiB)
    r = cli("snapshot", "create", "-m", "with the weights")
    clean_failure(r)
    problems, _ = fsck_problems(root)
    report(
        "full disk 8m",
        file_bytes_written=wrote,
        exit_code=r.exit_code,
        message=repr(r.stderr.strip()[:120]),
        fsck_problems=len(problems),
    )
    assert not problems, f"fsck on the full disk: {problems}"
    assert snapshot_ids(root) == sorted(expected)
    (root / "weights.bin").unlink()
    earlier_snapshots_check_out(root, expected, tmp_path)


def test_disk_filling_up_while_a_snapshot_is_written(
    small_disk: Callable[[str], Path],
    cli: Callable[..., Any],
    tree: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Many small source files pass the up-front space check (code is not counted) and
    fill the disk half-way through storing them."""
    disk = small_disk("64m")
    root = project_on(disk, cli, monkeypatch)
    tree(root, {"train.py": "print('training')\n"})
    first = cli("snapshot", "create", "-m", "small")
    assert first.exit_code == 0, first.output
    expected = {first.stdout.strip(): tree_contents(root)}
    for i in range(48):  # 24 MiB of incompressible source text
        text = base64.b64encode(os.urandom(384 * 1024)).decode()
        (root / f"table_{i:02}.py").write_text(f"T = '{text}'\n")
    leave = 17 * MiB  # past the 16 MiB margin; less than the source files need
    fill(disk / "filler", free_bytes(disk) - leave)
    r = cli("snapshot", "create", "-m", "too much code")
    status = cli("status")
    listed_snaps = cli("snapshot", "ls")
    listed_runs = cli("ls")
    problems, _ = fsck_problems(root)
    report(
        "full disk mid-way",
        exit_code=r.exit_code,
        message=repr(r.stderr.strip()[:120]),
        fsck_problems=len(problems),
        status_exit=status.exit_code,
        ls_exit=listed_runs.exit_code,
    )
    assert r.exit_code != 0, "the snapshot did not fill the disk: make the source files bigger"
    clean_failure(r)
    for other in (status, listed_snaps, listed_runs):
        assert "Traceback" not in other.output and "unexpected error" not in other.output, (
            other.output
        )
        assert other.exit_code == 0 or not failure_problems(
            other.exit_code, other.stdout, other.stderr
        ), other.output
    assert not problems, f"fsck on the full disk: {problems}"
    (disk / "filler").unlink()
    earlier_snapshots_check_out(root, expected, tmp_path)
    assert not fsck_problems(root)[0]


@pytest.mark.slow
def test_run_whose_output_fills_the_disk_still_ends_and_is_recorded(
    small_disk: Callable[[str], Path],
    cli: Callable[..., Any],
    tree: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A task that prints 30 MB onto a 24 MiB disk: the run must end, be recorded with its
    outcome, and leave the store sound; it must not hang on a log it cannot write."""
    root = project_on(small_disk("24m"), cli, monkeypatch)
    tree(root, {"train.py": "print('training')\n"})
    assert cli("snapshot", "create", "-m", "start").exit_code == 0
    task = "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 30000000"
    proc = subprocess.Popen(
        datmo_argv("run", "--executor", "local", task),
        cwd=root,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        code = proc.wait(30)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_all(supervisors(root))
        kill_all(processes_with("yes 0123456789abcdefghijklmnopqrstuvwxyz"))
    docs = run_docs(root)
    report(
        "full disk run",
        ended=code is not None,
        exit_code=code,
        statuses=[d["status"] for d in docs],
        error=repr((docs[0]["error"] or "")[:100]) if docs else None,
    )
    assert code is not None, "the run hung once its log filled the disk"
    assert docs and docs[0]["status"] in ("SUCCESS", "FAILED"), docs
    assert docs[0]["error"] and "disk" in docs[0]["error"], docs[0]["error"]
    assert wait_until(lambda: not supervisors(root), 10)
    assert not fsck_problems(root)[0]
    with contextlib.suppress(FileNotFoundError):
        json.loads((root / ".datmo" / "runs" / f"{docs[0]['id']}.json").read_text())
