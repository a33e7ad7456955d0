"""Bayesian sweeps: `datmo sweep ... --optimize METRIC:max|min --trials N` asks Optuna's
TPE sampler for each trial and tells it each run's result; workers in other processes
share one study through its journal file, never asking past --trials nor telling a trial
twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, runs

LOCAL = ("--executor", "local")
# The score peaks at x=2, y=1.
TRAIN = (
    "import datmo\n"
    "x, y = datmo.config('x'), datmo.config('y')\n"
    "print(f'score: {-(x - 2) ** 2 - (y - 1) ** 2}')\n"
)


def study_states(project: Path, sweep_id: str) -> list[str]:
    """Each trial's state, read from the journal with Optuna itself."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = project / ".datmo" / "sweeps" / f"{sweep_id}.optuna"
    st = optuna.load_study(
        study_name=sweep_id, storage=JournalStorage(JournalFileBackend(str(journal)))
    )
    return [t.state.name for t in st.trials]


def test_a_bayesian_sweep_runs_its_trials_and_tells_each_result_once(
    project: Path, cli: Callable[..., Any], tree: Callable[..., None]
) -> None:
    tree(project, {"train.py": TRAIN})
    result = cli(
        "sweep", *LOCAL, "python train.py", "-c", "x=uniform(-5,5)", "-c", "y=int(-3,3)",
        "--optimize", "score:max", "--trials", "12", "--parallel", "2", "--seed", "3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    made = result.stdout.splitlines()[0]
    docs = runs(cli)
    assert len(docs) == 12 and {d["status"] for d in docs} == {"SUCCESS"}
    assert all(-5 <= d["config"]["x"] <= 5 and d["config"]["y"] in range(-3, 4) for d in docs)
    assert len({d["config"]["x"] for d in docs}) == 12  # every trial a point of its own
    assert study_states(project, made) == ["COMPLETE"] * 12
    shown = json.loads(cli("sweep", "show", made[:8], "--format", "json").stdout)
    scores = [r["score"] for r in shown]
    assert scores == sorted(scores, reverse=True) and len(shown) == 12
    listed = json.loads(cli("sweep", "ls", "--format", "json").stdout)
    assert listed[0]["search"] == "tpe (12)" and listed[0]["runs"] == "12 SUCCESS"
    assert "best: run" in result.stderr


def test_workers_in_two_processes_share_the_study(
    project: Path, cli: Callable[..., Any], tree: Callable[..., None]
) -> None:
    tree(project, {"train.py": TRAIN})
    staged = cli(
        "sweep", *LOCAL, "python train.py", "-c", "x=uniform(-5,5)", "-c", "y=choice(0,1,2)",
        "--optimize", "score:max", "--trials", "8",
    )  # fmt: skip
    assert staged.exit_code == 0, staged.output
    made = staged.stdout.splitlines()[0]
    assert [d["status"] for d in runs(cli)] == ["QUEUED"]  # one trial asked; more as it goes
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "datmo", "queue", "start", "-j", "1"]
    workers = [
        subprocess.Popen(cmd, cwd=project, env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for w in workers:
        _, err = w.communicate(timeout=180)
        assert w.returncode == 0, err
    docs = runs(cli)
    assert len(docs) == 8 and {d["status"] for d in docs} == {"SUCCESS"}
    assert sorted(d["queue"]["point"] for d in docs) == list(range(8))
    assert study_states(project, made) == ["COMPLETE"] * 8


def test_a_failed_run_is_a_failed_trial_and_a_stopped_one_is_asked_again_on_resume(
    project: Path, cli: Callable[..., Any], tree: Callable[..., None]
) -> None:
    tree(project, {"train.py": "import sys, datmo\nsys.exit(datmo.config('x') > 0)\n"})
    result = cli(
        "sweep", *LOCAL, "python train.py", "-c", "x=-1,1", "--optimize", "score:max",
        "--trials", "3", "--parallel", "1", "--seed", "1",
    )  # fmt: skip
    assert result.exit_code == 1, result.output  # a run failed
    made = result.stdout.splitlines()[0]
    # No run wrote a score: every trial failed, none was left waiting.
    assert study_states(project, made) == ["FAIL"] * 3
    assert len(runs(cli)) == 3

    tree(project, {"train.py": TRAIN.replace("y = datmo.config('x'), datmo.config('y')", "")})
    second = cli(
        "sweep", *LOCAL, "sleep 30", "-c", "x=uniform(0,1)", "--optimize", "score:max",
        "--trials", "2",
    )  # fmt: skip
    other = second.stdout.splitlines()[0]
    stopped = cli("sweep", "stop", other[:8])
    assert stopped.exit_code == 0 and "1 staged run(s) stopped" in stopped.stdout
    resumed = cli("sweep", "resume", other[:8])
    assert resumed.exit_code == 0, resumed.output
    mine = [d for d in runs(cli) if d["sweep_id"] == other]
    assert sorted(d["status"] for d in mine) == ["QUEUED", "STOPPED"]
    assert study_states(project, other) == ["FAIL", "RUNNING"]  # the stopped one told


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--trials", "5"), "--optimize METRIC:max|min and --trials N"),
        (("--optimize", "score:max"), "--optimize METRIC:max|min and --trials N"),
        (("--optimize", "score:max", "--trials", "0"), "(N >= 1)"),
        (("--optimize", "score", "--trials", "3"), "write METRIC:max or METRIC:min"),
        (("--optimize", "a:max", "--objective", "b:min", "--trials", "3"), "disagree"),
        (("--optimize", "a:max", "--trials", "3", "--random", "2"), "and no --random"),
    ],
)
def test_bad_bayesian_options_are_one_line_errors(
    project: Path, cli: Callable[..., Any], args: tuple[str, ...], said: str
) -> None:
    result = cli("sweep", *LOCAL, "true", "-c", "x=uniform(0,1)", *args)
    assert result.exit_code == 125, result.output  # datmo's own failure, as in `run`
    assert said in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert runs(cli) == [] and not list((project / ".datmo").glob("sweeps/*.json"))


def test_without_optuna_the_error_says_how_to_get_it(
    project: Path, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    result = cli(
        "sweep", *LOCAL, "true", "-c", "x=uniform(0,1)", "--optimize", "a:max", "--trials", "2"
    )
    assert result.exit_code == 125, result.output
    assert "pip install 'datmo[optuna]'" in result.stderr
    assert runs(cli) == []


def test_gc_keeps_the_snapshot_a_sweep_starts_from(
    project: Path, cli: Callable[..., Any], tree: Callable[..., None]
) -> None:
    tree(project, {"train.py": TRAIN})
    made = cli(
        "sweep", *LOCAL, "python train.py", "-c", "x=uniform(-1,1)", "-c", "y=choice(1)",
        "--optimize", "score:max", "--trials", "3",
    ).stdout.splitlines()[0]  # fmt: skip
    assert cli("queue", "clear").exit_code == 0  # no run refers to the base snapshot now
    assert cli("gc", "--grace", "0").exit_code == 0
    (project / "train.py").write_text("raise SystemExit('the tree changed')\n")
    resumed = cli("sweep", "resume", made[:8], "--parallel", "1")
    assert resumed.exit_code == 0, resumed.output  # the code of the sweep's start, not now's
    assert sorted(d["status"] for d in runs(cli)) == ["SUCCESS"] * 3
