"""The early supervisor: `datmo run` starts its supervisor before loading the CLI, so the
two start-ups overlap; one that gets no orders (bad options, no project) goes away."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import datmo_subprocess

from datmo.cli.entry import exit_code
from datmo.core.task.prespawn import executor_hint


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["--executor", "local", "true"], "local"),
        (["--executor=docker", "true"], "docker"),
        (["-c", "a=1", "true"], ""),
        (["--", "prog", "--executor", "local"], ""),  # the task's own arguments
        (["--executor"], ""),
    ],
)
def test_executor_hint(args: list[str], hint: str) -> None:
    assert executor_hint(args) == hint


def _supervisors_in(folder: Path) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if b"datmo.cli.supervise" in cmd and Path(cwd) == folder:
            found.append(int(pid))
    return found


def _none_left(folder: Path) -> None:
    deadline = time.monotonic() + 10
    while _supervisors_in(folder) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _supervisors_in(folder) == []


def test_a_run_is_handed_to_the_early_supervisor(project: Path) -> None:
    done = datmo_subprocess("run", "-d", "--executor", "local", "sleep 3", cwd=project)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip().splitlines()[-1]
    record = json.loads((project / ".datmo" / "runs" / f"{run_id}.json").read_text())
    cmdline = Path(f"/proc/{record['supervisor']['pid']}/cmdline").read_bytes().split(b"\0")
    assert b"--early" in cmdline  # started by the console script before the CLI loaded
    stopped = datmo_subprocess("stop", run_id, cwd=project)
    assert stopped.returncode == 0, stopped.stderr
    _none_left(project)


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--memory", "lots", "true"],  # refused by datmo: exit 125
        ["run", "--executor", "local", "--data", "missing/", "true"],
        ["run", "--no-such-option", "true"],
    ],
)
def test_an_early_supervisor_without_orders_goes_away(project: Path, args: list[str]) -> None:
    done = datmo_subprocess(*args, cwd=project)
    assert done.returncode == 125, done.stderr
    _none_left(project)
    assert not list((project / ".datmo" / "runs").glob("*.json"))


def test_outside_a_project_no_supervisor_is_left(tmp_path: Path) -> None:
    done = datmo_subprocess("run", "true", cwd=tmp_path)
    assert done.returncode != 0 and "datmo init" in done.stderr
    _none_left(tmp_path)


@pytest.mark.parametrize(("value", "code"), [(None, 0), (0, 0), (3, 3), (125, 125), (256, 0)])
def test_console_script_exit_codes(value: object, code: int) -> None:
    assert exit_code(value) == code


def test_console_script_exit_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code("went wrong") == 1
    assert capsys.readouterr().err == "went wrong\n"


def test_console_script_output_survives_a_fast_exit(project: Path) -> None:
    # The console script ends with os._exit: what it printed must all be there.
    done = datmo_subprocess("snapshot", "ls", "--format", "json", cwd=project)
    assert done.returncode == 0 and json.loads(done.stdout) == []
    closed = datmo_subprocess("nosuchcommand", cwd=project)
    assert closed.returncode == 2 and closed.stderr.startswith("datmo: error:")
