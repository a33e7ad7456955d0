"""The run queue: runs staged with `datmo run --queue`, started by `datmo queue start`
workers K at a time, each in a working copy of its own, GPUs handed out exclusively."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import run_doc, runs

LOCAL = ("--executor", "local")


def stage(cli: Callable[..., Any], *args: str) -> str:
    result = cli("run", "--queue", *LOCAL, *args)
    assert result.exit_code == 0, result.output
    run_id: str = result.stdout.strip().splitlines()[-1]
    assert run_doc(cli, run_id)["status"] == "QUEUED"
    return run_id


STAMPED = "date +%s.%N; sleep 0.6; date +%s.%N"  # the task's own start and end


def spans(cli: Callable[..., Any]) -> dict[str, tuple[float, float]]:
    """Each run's task, from when it started to when it ended, as the task saw it: a
    slot is free once the task ended (its after snapshot is its supervisor's)."""
    out = {}
    for d in runs(cli):
        start, end = cli("logs", d["id"][:8]).stdout.split()[:2]
        out[d["id"]] = (float(start), float(end))
    return out


def test_a_queued_run_holds_the_tree_as_staged_and_leaves_yours_alone(
    project: Path, cli: Callable[..., Any], tree: Callable[..., None]
) -> None:
    tree(project, {"train.py": "print('v1')\n", "config.json": '{"lr": 0.1, "bs": 8}'})
    run_id = stage(cli, "-c", "lr=0.5", "python train.py; cat config.json; echo made > out.txt")
    (project / "train.py").write_text("print('v2: edited after staging')\n")
    result = cli("queue", "start")
    assert result.exit_code == 0, result.output
    doc = run_doc(cli, run_id)
    assert doc["status"] == "SUCCESS" and doc["config"] == {"lr": 0.5, "bs": 8}
    log = cli("logs", run_id).stdout
    assert "v1" in log and "v2" not in log
    assert json.loads(log.splitlines()[1]) == {"lr": 0.5, "bs": 8}  # the merged file
    # Your tree: the config file as you wrote it, nothing the run made, no copy left.
    assert json.loads((project / "config.json").read_text()) == {"lr": 0.1, "bs": 8}
    assert not (project / "out.txt").exists()
    assert os.listdir(project / ".datmo" / "work") == []
    files = cli("snapshot", "inspect", f"{run_id}", "--format", "json")
    assert files.exit_code == 0 and "out.txt" in files.stdout  # the after snapshot has it
    assert doc["queue"]["attempts"] == 1


def test_queue_ls_order_priority_rm_and_clear(project: Path, cli: Callable[..., Any]) -> None:
    first = stage(cli, "true")
    second = stage(cli, "true")
    urgent = stage(cli, "--priority", "5", "true")
    listed = json.loads(cli("queue", "ls", "--format", "json").stdout)
    assert [r["id"] for r in listed] == [urgent, first, second]
    assert cli("queue", "ls", "--limit", "1", "--format", "json").stdout.count('"id"') == 1
    table = cli("queue", "ls")
    assert "no worker is running; start one with 'datmo queue start'" in table.stderr
    assert cli("ls", "--format", "json").stdout.count('"QUEUED"') == 3  # ls shows them too

    assert cli("queue", "rm", first[:8]).exit_code == 0
    assert first not in cli("ls", "--format", "json").stdout
    cleared = cli("queue", "clear")
    assert cleared.exit_code == 0 and "removed 2 staged run(s)" in cleared.stdout
    assert runs(cli) == []


def test_queue_rm_refuses_a_run_that_is_not_queued(project: Path, cli: Callable[..., Any]) -> None:
    assert cli("run", *LOCAL, "true").exit_code == 0
    (done,) = runs(cli)
    result = cli("queue", "rm", done["id"][:8])
    assert result.exit_code != 0
    assert result.stderr.strip().count("\n") == 0 and "not QUEUED" in result.stderr
    assert run_doc(cli, done["id"])["status"] == "SUCCESS"  # nothing lost
    assert cli("queue", "rm", "nosuchrun").exit_code != 0


def test_bad_queue_options_are_one_line_errors(project: Path, cli: Callable[..., Any]) -> None:
    for args in (
        ("run", "--queue", "-d", *LOCAL, "true"),
        ("run", "--queue", "--num-gpus", "-1", *LOCAL, "true"),
        ("queue", "start", "-j", "0"),
        ("queue", "start", "--gpus", "a,b"),
        ("queue", "start", "--gpus", "0,0"),
    ):
        result = cli(*args)
        assert result.exit_code != 0, args
        assert "Traceback" not in result.output and result.stderr.strip(), args
    assert runs(cli) == []


def test_a_worker_runs_k_at_a_time_and_exits_by_how_they_ended(
    project: Path, cli: Callable[..., Any]
) -> None:
    ids = [stage(cli, STAMPED) for _ in range(4)]
    result = cli("queue", "start", "-j", "2")
    assert result.exit_code == 0, result.output
    times = spans(cli)
    claimed = {d["id"]: d["started_at"] for d in runs(cli)}
    assert sorted(ids, key=claimed.__getitem__) == ids  # first in, first out
    # Two at a time: the third starts only after one of the first two ended.
    assert times[ids[1]][0] < times[ids[0]][1]
    assert times[ids[2]][0] >= min(times[ids[0]][1], times[ids[1]][1])

    stage(cli, "exit 3")
    stage(cli, "true")
    result = cli("queue", "start", "-j", "2")
    assert result.exit_code == 1  # one failed
    assert sorted(d["status"] for d in runs(cli)) == ["FAILED"] + ["SUCCESS"] * 5


def test_an_empty_queue_is_a_quick_success(project: Path, cli: Callable[..., Any]) -> None:
    result = cli("queue", "start")
    assert result.exit_code == 0, result.output


# -- GPUs -------------------------------------------------------------------------


@pytest.fixture
def two_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\ncat <<'EOF'\n0, GPU-aaaa-0, NVIDIA H100 80GB HBM3\n"
        "1, GPU-bbbb-1, NVIDIA H100 80GB HBM3\nEOF\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


SHOW_GPU = "date +%s.%N; sleep {s}; date +%s.%N; echo CVD=$CUDA_VISIBLE_DEVICES"


def test_gpus_are_handed_out_exclusively_and_recorded(
    project: Path, cli: Callable[..., Any], two_gpus: None
) -> None:
    ids = [stage(cli, "--num-gpus", "1", SHOW_GPU.replace("{s}", "0.5")) for _ in range(4)]
    result = cli("queue", "start", "-j", "4")  # four slots, but two GPUs
    assert result.exit_code == 0, result.output
    docs = {d["id"]: d for d in runs(cli)}
    for run_id in ids:
        doc = docs[run_id]
        (gpu,) = doc["queue"]["gpus"]
        assert f"CVD={gpu}" in cli("logs", run_id).stdout
        assert doc["options"]["gpus"] == gpu
        assert doc["gpus"] == ["NVIDIA H100 80GB HBM3"]  # the model it ran on
    # No two tasks that ran at the same time held the same GPU.
    t = spans(cli)
    for a in ids:
        for b in ids:
            overlap = t[a][0] < t[b][1] and t[b][0] < t[a][1]
            if a != b and overlap:
                assert docs[a]["queue"]["gpus"] != docs[b]["queue"]["gpus"]


def test_backfill_a_later_run_that_fits_starts_first(
    project: Path, cli: Callable[..., Any], two_gpus: None
) -> None:
    holder = stage(cli, "--num-gpus", "1", "date +%s.%N; sleep 1.5; date +%s.%N")
    big = stage(cli, "--num-gpus", "2", "date +%s.%N; date +%s.%N")  # waits: one GPU is taken
    small = stage(cli, "--num-gpus", "1", "date +%s.%N; date +%s.%N")  # fits the free one
    result = cli("queue", "start", "-j", "3", "--gpus", "0,1")
    assert result.exit_code == 0, result.output
    t = spans(cli)
    assert t[small][0] < t[big][0]
    assert t[big][0] >= t[holder][1]  # the two-GPU run waited for both
    assert sorted(run_doc(cli, big)["queue"]["gpus"]) == ["0", "1"]


def test_a_run_asking_more_gpus_than_the_worker_has_fails_with_the_reason(
    project: Path, cli: Callable[..., Any], two_gpus: None
) -> None:
    run_id = stage(cli, "--num-gpus", "3", "true")
    ok = stage(cli, "true")
    result = cli("queue", "start", "--gpus", "0,1")
    assert result.exit_code == 1
    doc = run_doc(cli, run_id)
    assert doc["status"] == "FAILED" and "asks for 3 GPU(s)" in doc["error"]
    assert run_doc(cli, ok)["status"] == "SUCCESS"


# -- one working tree, one run ------------------------------------------------------


def test_a_second_run_while_one_works_in_the_tree_gets_a_copy_of_its_own(
    project: Path, cli: Callable[..., Any]
) -> None:
    first = cli("run", *LOCAL, "-d", "sleep 1.5; echo A > model.pt")
    assert first.exit_code == 0, first.output
    first_id = runs(cli)[0]["id"]
    second = cli("run", *LOCAL, "echo B > model.pt")
    assert second.exit_code == 0, second.output
    assert f"run {first_id[:8]} is running in your working tree" in second.stderr
    second_id = next(d["id"] for d in runs(cli) if d["id"] != first_id)
    from conftest import wait_for

    wait_for(lambda: run_doc(cli, first_id)["status"] == "SUCCESS", "the first run", 20)
    # Each after snapshot holds its own model; only the first run wrote your tree.
    assert (project / "model.pt").read_text() == "A\n"
    for run_id, want in ((first_id, "A\n"), (second_id, "B\n")):
        out = project.parent / f"check-{want.strip()}"
        got = cli("snapshot", "checkout", run_id, "--to", str(out))
        assert got.exit_code == 0, got.output
        assert (out / "model.pt").read_text() == want
    assert run_doc(cli, second_id)["workdir"].startswith(".datmo/work/")


def test_isolated_keeps_the_tree_and_keep_workdir_keeps_a_failed_copy_until_gc(
    project: Path, cli: Callable[..., Any], tree: Callable[..., None]
) -> None:
    tree(project, {"config.json": '{"lr": 0.1}', "data": {"big.bin": b"x" * 10}})
    (project / ".datmoignore").write_text("data/\n")
    result = cli("run", *LOCAL, "--isolated", "-c", "lr=0.3", "cat config.json; ls data")
    assert result.exit_code != 0  # data/ is not in the working copy
    assert "not in the run's working copy" in result.stderr and "--data" in result.stderr
    assert json.loads((project / "config.json").read_text()) == {"lr": 0.1}
    assert os.listdir(project / ".datmo" / "work") == []  # removed after the run

    failed = cli("run", *LOCAL, "--isolated", "--keep-workdir", "echo partial > ck.pt; exit 4")
    assert failed.exit_code == 4
    doc = next(d for d in runs(cli) if d["exit_code"] == 4)
    kept = project / doc["workdir"]
    assert (kept / "ck.pt").read_text() == "partial\n"
    assert "kept" in failed.stderr and doc["workdir"] in failed.stderr
    gone = cli("gc", "--grace", "0s")
    assert gone.exit_code == 0, gone.output
    assert not kept.exists()
