"""The queue under kills and company: a worker SIGKILLed while it hands out runs loses
none and runs none twice; two workers at once never start one run twice; a run whose
worker died before its supervisor took over is queued again once with --retry 1;
`queue stop` drains, `queue stop --now` stops; fsck is clean after each."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, run_datmo, runs, wait_for

LOCAL = ("--executor", "local")


def datmo_proc(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "datmo", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stage_many(n: int, ran: Path, *extra: str) -> list[str]:
    ids = []
    for _ in range(n):
        # Each task notes its run id outside the project: a run started twice shows twice.
        result = run_datmo(
            "run", "--queue", *LOCAL, *extra, f"echo $DATMO_RUN_ID >> {ran}; sleep 0.3"
        )
        assert result.exit_code == 0, result.output
        ids.append(result.stdout.strip())
    return ids


def settled() -> bool:
    return not any(d["status"] == "RUNNING" for d in runs(run_datmo))


def check_fsck() -> None:
    result = run_datmo("fsck")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_worker_killed_while_it_hands_out_runs_loses_none_and_runs_none_twice(
    project: Path, tmp_path: Path, seed: int
) -> None:
    ran = tmp_path / "ran.log"
    ids = stage_many(8, ran, "--retry", "1")
    worker = datmo_proc("queue", "start", "-j", "2", cwd=project)
    time.sleep(random.Random(seed).uniform(0.3, 2.0))  # a seeded point in its work
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    # The runs it started go on (each has its own supervisor); none stays RUNNING forever.
    wait_for(settled, "the killed worker's runs to end", 30)
    again = datmo_proc("queue", "start", "-j", "2", cwd=project)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    docs = {d["id"]: d for d in runs(run_datmo)}
    assert sorted(docs) == sorted(ids)
    assert {d["status"] for d in docs.values()} == {"SUCCESS"}, err
    started = ran.read_text().split()
    assert sorted(started) == sorted(ids)  # every run ran, and exactly once
    assert all(1 <= d["queue"]["attempts"] <= 2 for d in docs.values())
    assert os.listdir(project / ".datmo" / "work") == []
    check_fsck()


def test_two_workers_at_once_never_start_one_run_twice(project: Path, tmp_path: Path) -> None:
    ran = tmp_path / "ran.log"
    ids = stage_many(10, ran)
    workers = [datmo_proc("queue", "start", "-j", "2", cwd=project) for _ in range(2)]
    for w in workers:
        _, err = w.communicate(timeout=120)
        assert w.returncode == 0, err
    assert sorted(ran.read_text().split()) == sorted(ids)
    assert {d["status"] for d in runs(run_datmo)} == {"SUCCESS"}
    assert len({d["queue"]["worker"] for d in runs(run_datmo)}) == 2  # both did work
    check_fsck()


def _claim_as_a_dead_worker(project: Path) -> str:
    """Claim the next queued run as a worker would, then die before handing it over."""
    code = (
        "import os\n"
        "from datmo.core.controller.project import open_project\n"
        "from datmo.core.controller import worker\n"
        "w = worker.Worker(open_project(), 1, [])\n"
        "print(w.claim()[0].id, flush=True)\n"
        "os._exit(0)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=project, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_retry_queues_a_run_again_once_when_its_worker_died_before_it_started(
    project: Path, tmp_path: Path
) -> None:
    ran = tmp_path / "ran.log"
    (retried,) = stage_many(1, ran, "--retry", "1")
    claimed = _claim_as_a_dead_worker(project)
    assert claimed == retried
    doc = next(d for d in runs(run_datmo) if d["id"] == retried)
    assert doc["status"] == "LOST"  # its worker is gone: no one answers for it
    result = run_datmo("queue", "start")
    assert result.exit_code == 0, result.output
    doc = next(d for d in runs(run_datmo) if d["id"] == retried)
    assert doc["status"] == "SUCCESS" and doc["queue"]["attempts"] == 2
    assert ran.read_text().split() == [retried]

    # Without retries left it ends LOST, and is not run.
    (once,) = stage_many(1, ran)
    assert _claim_as_a_dead_worker(project) == once
    result = run_datmo("queue", "start")
    assert result.exit_code == 0, result.output
    doc = next(d for d in runs(run_datmo) if d["id"] == once)
    assert doc["status"] == "LOST" and doc["ended_at"]
    assert once not in ran.read_text()
    check_fsck()


def test_queue_stop_drains_and_stop_now_stops(project: Path, tmp_path: Path) -> None:
    ran = tmp_path / "ran.log"
    for _ in range(3):
        assert run_datmo("run", "--queue", *LOCAL, "sleep 1.5").exit_code == 0
    worker = datmo_proc("queue", "start", "-j", "1", cwd=project)

    def one_running() -> bool:
        return any(d["status"] == "RUNNING" for d in runs(run_datmo))

    wait_for(one_running, "the worker to start a run", 30)
    listed = run_datmo("queue", "ls")
    assert "worker " in listed.stderr and "1 at a time" in listed.stderr
    told = run_datmo("queue", "stop")
    assert told.exit_code == 0 and "told 1 worker(s)" in told.stdout
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err  # the running one finished
    assert sorted(d["status"] for d in runs(run_datmo)) == ["QUEUED", "QUEUED", "SUCCESS"]

    worker = datmo_proc("queue", "start", "-j", "1", cwd=project)
    wait_for(one_running, "the worker to start a run", 30)
    assert run_datmo("queue", "stop", "--now").exit_code == 0
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 130, err
    statuses = sorted(d["status"] for d in runs(run_datmo))
    assert statuses == ["QUEUED", "STOPPED", "SUCCESS"]  # never re-runs a finished run
    check_fsck()
    del ran


def test_a_machine_restart_leaves_queued_runs_queued(project: Path, tmp_path: Path) -> None:
    ids = stage_many(2, tmp_path / "ran.log")
    # A restart is a new process reading the same records: nothing but a worker moves them.
    for args in (("ls",), ("queue", "ls"), ("fsck",), ("gc",), ("status",)):
        assert run_datmo(*args).exit_code == 0, args
    assert [d["status"] for d in runs(run_datmo)] == ["QUEUED", "QUEUED"]
    data: Any = json.loads(run_datmo("queue", "ls", "--format", "json").stdout)
    assert sorted(r["id"] for r in data) == sorted(ids)
