"""Sweeps: `datmo sweep COMMAND -c KEY=VALUES...` stages a run per point of the space,
`--parallel K` runs them now; a sweep is a record with ls, show, stop and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, runs, wait_for

from datmo.core.controller import space
from datmo.errors import UsageError

LOCAL = ("--executor", "local")
# acc is lr*bs, so the best point is known.
TRAIN = "import datmo\nc = datmo.config()\nprint(f\"acc: {c['lr'] * c['bs']}\")\n"


def sweep_id(result: Any) -> str:
    assert result.exit_code in (0, 1), result.output
    line: str = result.stdout.strip().splitlines()[0]
    return line


def test_a_grid_runs_in_parallel_ranked_by_its_objective(
    project: Path, cli: Callable[..., Any], tree: Callable[..., None]
) -> None:
    tree(project, {"train.py": TRAIN, "config.json": '{"lr": 1, "bs": 1, "seed": 0}'})
    result = cli(
        "sweep",
        *LOCAL,
        "python train.py --lr {lr}",
        "-c",
        "lr=0.1,0.01,0.001",
        "-c",
        "bs=32,64",
        "--parallel",
        "2",
        "--objective",
        "acc:max",
    )
    assert result.exit_code == 0, result.output
    made = sweep_id(result)
    docs = runs(cli)
    assert len(docs) == 6 and {d["status"] for d in docs} == {"SUCCESS"}
    points = sorted((d["config"]["lr"], d["config"]["bs"]) for d in docs)
    assert points == sorted((lr, bs) for lr in (0.1, 0.01, 0.001) for bs in (32, 64))
    assert all(d["config"]["seed"] == 0 and d["sweep_id"] == made for d in docs)
    assert all(d["command"].startswith("python train.py --lr 0.") for d in docs)
    assert "best: run" in result.stderr and '"lr": 0.1' in result.stderr.split("best:")[1]
    # The tree is left alone: the config file as written, no working copies.
    assert json.loads((project / "config.json").read_text()) == {"lr": 1, "bs": 1, "seed": 0}
    assert os.listdir(project / ".datmo" / "work") == []

    shown = json.loads(cli("sweep", "show", made[:8], "--format", "json").stdout)
    assert [r["acc"] for r in shown] == sorted((r["acc"] for r in shown), reverse=True)
    assert shown[0]["lr"] == 0.1 and shown[0]["bs"] == 64
    listed = cli("sweep", "ls", "--format", "json")
    (entry,) = json.loads(listed.stdout)
    assert entry["id"] == made and entry["runs"] == "6 SUCCESS"
    only = json.loads(cli("ls", "--sweep", made[:8], "--format", "json").stdout)
    assert len(only) == 6
    # `datmo sweep start` is the same command.
    again = cli("sweep", "start", *LOCAL, "true", "-c", "x=1,2", "--parallel", "2")
    assert again.exit_code == 0, again.output
    assert len(runs(cli)) == 8


def test_without_parallel_the_runs_wait_for_a_worker(
    project: Path, cli: Callable[..., Any]
) -> None:
    result = cli("sweep", *LOCAL, "echo {n}", "-c", "n=range(3)")
    assert result.exit_code == 0, result.output
    assert "datmo queue start" in result.stderr
    assert sorted(d["config"]["n"] for d in runs(cli)) == [0, 1, 2]
    assert {d["status"] for d in runs(cli)} == {"QUEUED"}
    worked = cli("queue", "start", "-j", "3")
    assert worked.exit_code == 0, worked.output
    assert {d["status"] for d in runs(cli)} == {"SUCCESS"}


def test_a_failed_point_makes_the_sweep_exit_1(project: Path, cli: Callable[..., Any]) -> None:
    result = cli("sweep", *LOCAL, "exit {code}", "-c", "code=0,2", "--parallel", "2")
    assert result.exit_code == 1
    assert sorted(d["status"] for d in runs(cli)) == ["FAILED", "SUCCESS"]


def test_lists_and_quoted_strings_are_single_values(project: Path, cli: Callable[..., Any]) -> None:
    result = cli(
        "sweep",
        *LOCAL,
        "true",
        "-c",
        "layers=[64,32],[128]",
        "-c",
        'name="a, b",c',
    )
    assert result.exit_code == 0, result.output
    got = sorted(json.dumps(d["config"], sort_keys=True) for d in runs(cli))
    want = sorted(
        json.dumps({"layers": layers, "name": name}, sort_keys=True)
        for layers in ([64, 32], [128])
        for name in ("a, b", "c")
    )
    assert got == want


def test_random_search_is_reproducible_by_its_seed(project: Path, cli: Callable[..., Any]) -> None:
    args = ("sweep", *LOCAL, "true", "-c", "lr=loguniform(1e-5,1e-1)", "-c", "units=int(8,64)")
    assert cli(*args, "--random", "5", "--seed", "3").exit_code == 0
    assert cli(*args, "--random", "5", "--seed", "3").exit_code == 0
    assert cli(*args, "--random", "5", "--seed", "4").exit_code == 0
    by_sweep: dict[str, list[tuple[float, int]]] = {}
    for d in runs(cli):
        by_sweep.setdefault(d["sweep_id"], []).append((d["config"]["lr"], d["config"]["units"]))
    first, second, other = (sorted(v) for v in by_sweep.values())
    assert len(first) == 5
    assert sum(a == b for a, b in ((first, second), (first, other), (second, other))) == 1
    for lr, units in first + other:
        assert 1e-5 <= lr <= 1e-1 and 8 <= units <= 64 and isinstance(units, int)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("-c", "lr="), "empty value"),
        (("-c", "lr=range(1,2,3,4)"), "range takes 1 to 3"),
        (("-c", "lr=range(5,1)"), "empty"),
        (("-c", "lr=uniform(1)"), "two numbers"),
        (("-c", "lr=uniform(0,1)"), "--random"),
        (("-c", "lr=[1,2"), "unclosed"),
        (("-c", "lr"), "KEY=VALUE"),
        ((), "at least one -c"),
        (("-c", "a=range(100)", "-c", "b=range(11)"), "--yes"),
        (("-c", "lr=0.1", "--objective", "acc"), "METRIC:max"),
        (("-c", "lr=0.1", "--random", "0"), "--random"),
    ],
)
def test_bad_spaces_are_one_line_errors_and_stage_nothing(
    project: Path, cli: Callable[..., Any], args: tuple[str, ...], says: str
) -> None:
    result = cli("sweep", *LOCAL, "true", *args)
    assert result.exit_code != 0
    assert says in result.stderr, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.output
    assert runs(cli) == []
    assert cli("sweep", "ls", "--format", "json").stdout.strip() == "[]"


def test_a_grid_of_more_than_1000_needs_yes() -> None:
    from datmo.core.controller.sweep import plan

    dims = space.parse(["a=range(1001)"])
    with pytest.raises(UsageError, match="--yes"):
        plan(dims, None, 0, yes=False)
    assert len(plan(dims, None, 0, yes=True)) == 1001
    assert len(plan(space.parse(["a=range(1000)"]), None, 0, yes=False)) == 1000


def test_stop_and_resume_stage_only_what_has_no_result(
    project: Path, cli: Callable[..., Any]
) -> None:
    made = sweep_id(cli("sweep", *LOCAL, "exit {c}", "-c", "c=0,1,0,1"))
    assert {d["status"] for d in runs(cli)} == {"QUEUED"}
    # One point runs (SUCCESS), one fails; then the sweep is stopped with two staged.
    docs = sorted(runs(cli), key=lambda d: d["queue"]["point"])
    for d in docs[2:]:
        assert cli("queue", "rm", d["id"]).exit_code == 0
    assert cli("queue", "start").exit_code == 1  # point 1 failed
    stopped = cli("sweep", "stop", made[:8])
    assert stopped.exit_code == 0, stopped.output
    resumed = cli("sweep", "resume", made[:8], "--parallel", "2")
    assert resumed.exit_code == 1, resumed.output  # point 1 failed before; it is not rerun
    assert "2 run(s) staged" in resumed.stderr
    statuses = sorted((d["queue"]["point"], d["status"]) for d in runs(cli))
    assert statuses == [(0, "SUCCESS"), (1, "FAILED"), (2, "SUCCESS"), (3, "FAILED")]
    nothing = cli("sweep", "resume", made[:8])
    assert "every point has its run" in nothing.stderr
    assert len(runs(cli)) == 4


def test_sweep_stop_ends_staged_runs_stopped(project: Path, cli: Callable[..., Any]) -> None:
    made = sweep_id(cli("sweep", *LOCAL, "true", "-c", "x=1,2,3"))
    result = cli("sweep", "stop", made[:8])
    assert result.exit_code == 0 and "3 staged run(s) stopped" in result.stdout
    assert {d["status"] for d in runs(cli)} == {"STOPPED"}
    assert cli("queue", "start").exit_code == 0  # nothing left to run
    assert cli("sweep", "show", "nosuchsweep").exit_code != 0


def test_ctrl_c_stops_the_sweeps_runs_and_exits_130(project: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "datmo", "sweep", *LOCAL, "sleep 30", "-c", "i=1,2,3"]
    proc = subprocess.Popen(
        [*cmd, "--parallel", "2"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    from conftest import run_datmo

    def running() -> bool:
        return sum(d["status"] == "RUNNING" for d in runs(run_datmo)) == 2

    wait_for(running, "two runs of the sweep to start", 30)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    statuses = sorted(d["status"] for d in runs(run_datmo))
    assert statuses == ["STOPPED"] * 3  # two stopped running, one never started
    fsck = run_datmo("fsck")
    assert fsck.exit_code == 0, fsck.output


def test_the_sdk_sweeps_with_the_same_flags(project: Path, cli: Callable[..., Any]) -> None:
    import datmo

    (project / "train.py").write_text(TRAIN)
    found = datmo.sweep(
        "python train.py",
        {"lr": [0.5, 0.25], "bs": "range(1,3)"},
        parallel=2,
        objective="acc:max",
        executor="local",
    )
    assert found[0].config["lr"] * found[0].config["bs"] == 1.0  # the best: acc = lr * bs
    assert [r.metrics["acc"] for r in found] == sorted(r.metrics["acc"] for r in found)[::-1]
    assert len(found) == 4 and all(r.status == "SUCCESS" for r in found)
    with pytest.raises(UsageError):
        datmo.sweep("true", {})


def test_space_parsing() -> None:
    (d,) = space.parse(["x=range(1,10,4)"])
    assert d.values == (1, 5, 9)
    (d,) = space.parse(["x=choice(a,b)"])
    assert d.values == ("a", "b")
    (d,) = space.parse(["x=1e-3,2,true,null"])
    assert d.values == (0.001, 2, True, None)
    assert space.split_top("a,[1,2],'c,d',f(1,2)") == ["a", "[1,2]", "'c,d'", "f(1,2)"]
