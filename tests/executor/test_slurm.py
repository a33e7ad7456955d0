"""`--executor slurm` against a real one-node Slurm (scripts/slurm.sh): runs submitted as
job arrays, taken over on the node, followed from here; stop, time limits, requeues,
what Slurm knows when the supervisor cannot say it, and every refusal before anything
is made."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import run_doc, runs, wait_for

from datmo.core.entity.run import Run
from datmo.core.task.process import effective

pytestmark = pytest.mark.slurm
SLURM = ("--executor", "slurm")
TRAIN = (
    "import datmo, os, time\n"
    "lr = datmo.config('lr')\n"
    "for step in range(3):\n"
    "    datmo.log_metrics(step=step, loss=lr / (step + 1))\n"
    "open('model.pt', 'w').write(f'weights {lr}')\n"
    "print('gpus', os.environ.get('CUDA_VISIBLE_DEVICES'))\n"
)


def job_state(job: str) -> str:
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", job, "-o", "%T"], capture_output=True, text=True
    )
    return out.stdout.strip()


def added_by(cli: Callable[..., Any], run_id: str) -> list[str]:
    """The files a run's task made: its after snapshot against its before snapshot."""
    shown = cli("snapshot", "diff", f"{run_id}:before", run_id, "--format", "json")
    assert shown.exit_code == 0, shown.output
    diff = json.loads(shown.stdout)
    return [*diff["files"]["added"], *diff["code"]["added"]]


def only_run(cli: Callable[..., Any]) -> dict[str, Any]:
    (doc,) = runs(cli)
    return doc


def test_a_run_is_submitted_runs_on_the_node_and_records_what_happened(
    project: Path, cli: Callable[..., Any], tree: Callable[..., None], slurm: Path
) -> None:
    tree(project, {"train.py": TRAIN, "config.json": '{"lr": 1.0}'})
    result = cli("run", *SLURM, "-c", "lr=0.5", "python train.py")
    assert result.exit_code == 0, result.output
    assert "QUEUED as Slurm job" in result.stderr and "gpus None" in result.stdout
    doc = only_run(cli)
    assert doc["status"] == "SUCCESS" and doc["executor"] == "slurm"
    assert doc["config"]["lr"] == 0.5 and doc["metrics"]["loss"] == pytest.approx(0.5 / 3)
    job = doc["slurm"]
    assert job["job"].endswith("_0") and job["node"] and job["attempts"] == 1
    assert doc["supervisor"]["host"].startswith(job["node"])
    array = job["job"].split("_")[0]
    wait_for(lambda: job_state(array) == "COMPLETED", "the job to end in Slurm too", 30)
    # It worked in a copy of its own: your tree and config file are as you left them.
    assert not (project / "model.pt").exists()
    assert json.loads((project / "config.json").read_text()) == {"lr": 1.0}
    assert "model.pt" in added_by(cli, doc["id"])
    assert "loss" in cli("ls").stdout and job["job"] in cli("ls").stdout
    assert cli("fsck").exit_code == 0


def test_a_waiting_job_shows_slurms_reason_and_stop_cancels_it(
    project: Path, cli: Callable[..., Any], slurm: Path
) -> None:
    result = cli("run", "-d", *SLURM, "--slurm-arg=--hold", "true")
    assert result.exit_code == 0, result.output
    run_id = result.stdout.strip()
    listed = cli("ls").stdout
    assert "QUEUED" in listed and "PENDING (JobHeldUser)" in listed
    job = run_doc(cli, run_id)["slurm"]["job"]
    stopped = cli("stop", run_id[:8])
    assert stopped.exit_code == 0, stopped.output
    assert run_doc(cli, run_id)["status"] == "STOPPED"
    assert job_state(job.split("_")[0]) == "CANCELLED"


def test_stop_reaches_the_task_and_the_after_snapshot_is_taken(
    project: Path, cli: Callable[..., Any], tree: Callable[..., None], slurm: Path
) -> None:
    tree(
        project, {"work.py": "import time\nopen('partial.ckpt', 'w').write('x')\ntime.sleep(60)\n"}
    )
    run_id = cli("run", "-d", *SLURM, "python work.py").stdout.strip()
    wait_for(lambda: run_doc(cli, run_id)["status"] == "RUNNING", "the job to start", 30)
    time.sleep(1.0)  # the task wrote its checkpoint
    stopped = cli("stop", run_id[:8])
    assert stopped.exit_code == 0, stopped.output
    doc = run_doc(cli, run_id)
    assert doc["status"] == "STOPPED" and doc["after_snapshot_id"], doc
    assert "partial.ckpt" in added_by(cli, run_id)


@pytest.mark.slow
def test_the_time_limit_ends_it_failed_with_timeout_after_its_snapshot(
    project: Path, cli: Callable[..., Any], tree: Callable[..., None], slurm: Path
) -> None:
    tree(
        project,
        {
            "long.py": (
                "import time\n"
                "try:\n    time.sleep(300)\n"
                "except KeyboardInterrupt:\n"
                "    open('last.ckpt', 'w').write('saved'); print('checkpoint saved')\n"
            )
        },
    )
    result = cli("run", *SLURM, "--time", "1", "python long.py")
    assert result.exit_code == 124, result.output  # as timeout(1)
    doc = only_run(cli)
    assert doc["status"] == "FAILED" and doc["error"].startswith("TIMEOUT"), doc
    assert "checkpoint saved" in result.stdout  # SIGINT first: its handler ran
    assert "last.ckpt" in added_by(cli, doc["id"])


def fake_squeue(bin_dir: Path, line: str, log: Path) -> None:
    """A squeue that answers `line` for every job and notes each call."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "squeue"
    script.write_text(f'#!/bin/sh\necho call >> "{log}"\necho "{line}"\n')
    script.chmod(0o755)


def held_run(cli: Callable[..., Any]) -> str:
    result = cli("run", "-d", *SLURM, "--slurm-arg=--hold", "true")
    assert result.exit_code == 0, result.output
    return str(result.stdout.strip())


def pretend_running_elsewhere(project: Path, run_id: str, beat_age: float) -> None:
    """The record as a supervisor on another node would have left it."""
    path = project / ".datmo" / "runs" / f"{run_id}.json"
    doc = json.loads(path.read_text())
    doc["status"] = "RUNNING"
    doc["supervisor"] = {"pid": 1, "host": "node9:0000", "beat": time.time() - beat_age}
    new = path.with_name(f".{path.name}.tmp")  # replaced whole, as a node writes it
    new.write_text(json.dumps(doc))
    os.replace(new, path)


def test_a_job_slurm_killed_is_recorded_with_slurms_reason(
    project: Path, cli: Callable[..., Any], slurm: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    """Without cgroups this Slurm enforces no memory limit, so the OUT_OF_MEMORY path is
    tested through the state datmo reads: a silent supervisor, and squeue's answer."""
    run_id = held_run(cli)
    job = run_doc(cli, run_id)["slurm"]["job"]
    pretend_running_elsewhere(project, run_id, beat_age=1000)
    log = tmp_path / "squeue.log"
    fake_squeue(tmp_path / "bin", f"{job}|OUT_OF_MEMORY|OutOfMemory|node9", log)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    doc = run_doc(cli, run_id)
    assert doc["status"] == "FAILED" and "OUT_OF_MEMORY (OutOfMemory)" in doc["error"]
    assert len(log.read_text().split()) == 1  # one squeue call for the listing


def test_ls_asks_slurm_nothing_while_every_run_is_heard_from(
    project: Path, cli: Callable[..., Any], slurm: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    ids = [held_run(cli) for _ in range(3)]
    log = tmp_path / "squeue.log"
    fake_squeue(tmp_path / "bin", "0_0|PENDING|JobHeldUser|", log)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    assert cli("ls").exit_code == 0
    assert len(log.read_text().split()) == 1  # one call for the three QUEUED runs
    for run_id in ids:
        pretend_running_elsewhere(project, run_id, beat_age=5)
    log.unlink()
    listed = cli("ls")
    assert listed.stdout.count("RUNNING") == 3 and not log.exists()  # no call at all


def test_a_job_slurm_forgot_with_a_silent_supervisor_is_lost(
    project: Path, cli: Callable[..., Any], slurm: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    run_id = held_run(cli)
    pretend_running_elsewhere(project, run_id, beat_age=1000)
    fake_squeue(tmp_path / "bin", "", tmp_path / "log")  # it knows no such job
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    doc = run_doc(cli, run_id)
    assert doc["status"] == "LOST" and "no longer knows job" in doc["error"]


def test_remote_supervisors_are_judged_by_their_heartbeat() -> None:
    base = Run(id="a" * 40, command="x", created_at="2026-01-01T00:00:00Z")
    fresh = base.evolve(supervisor={"pid": 1, "host": "elsewhere:1", "beat": time.time()})
    stale = base.evolve(supervisor={"pid": 1, "host": "elsewhere:1", "beat": time.time() - 900})
    assert effective(fresh).status == "RUNNING"  # pid 1 here means nothing there
    assert effective(stale).status == "LOST"


def test_a_node_that_does_not_see_the_project_fails_fast_with_one_line(
    project: Path, cli: Callable[..., Any], slurm: Path
) -> None:
    run_id = held_run(cli)
    doc = run_doc(cli, run_id)
    batch = project / ".datmo" / "slurm" / f"{doc['slurm']['batch']}.json"
    data = json.loads(batch.read_text())
    batch.write_text(json.dumps({**data, "token": "another project's"}))
    subprocess.run(["scontrol", "release", doc["slurm"]["job"]], check=True)

    def ended() -> dict[str, Any] | None:
        now = run_doc(cli, run_id)
        return now if now["status"] != "QUEUED" else None

    now = wait_for(ended, "the job to fail", 60)
    assert now["status"] == "FAILED" and "FAILED" in now["error"], now
    out = Path(doc["slurm"]["output"]).read_text()
    assert "does not see the datmo project" in out and "share" in out


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--partition", "nope"), "invalid partition"),
        (("--time", "abc"), "Invalid --time"),
        (("--num-gpus", "4"), "node configuration is not available"),
        (("--cpus", "1.5"), "whole number"),
        (("--gpus", "0"), "--num-gpus"),
    ],
)
def test_what_slurm_refuses_is_one_line_before_anything_is_made(
    project: Path, cli: Callable[..., Any], slurm: Path, args: tuple[str, ...], said: str
) -> None:
    result = cli("run", *SLURM, *args, "true")
    assert result.exit_code == 125, result.output
    assert said in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert runs(cli) == [] and not list((project / ".datmo" / "snapshots").glob("*.json"))


def test_no_sbatch_and_no_controller_are_one_line_each(
    project: Path, cli: Callable[..., Any], slurm: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    result = cli("run", *SLURM, "true")
    assert result.exit_code == 125 and "sbatch is not on PATH" in result.stderr
    monkeypatch.undo()
    monkeypatch.chdir(project)
    conf = tmp_path / "slurm.conf"
    text = slurm.read_text().replace("SlurmctldPort", "#")
    conf.write_text(text + "SlurmctldPort=1\n")  # nobody answers there
    monkeypatch.setenv("SLURM_CONF", str(conf))
    monkeypatch.setattr("datmo.core.executor.slurm.TIMEOUT_S", 10.0)
    result = cli("run", *SLURM, "true")
    assert result.exit_code == 125 and len(result.stderr.strip().splitlines()) == 1
    assert runs(cli) == []


def test_a_gpu_asked_by_count_is_the_one_slurm_gives(
    project: Path, cli: Callable[..., Any], tree: Callable[..., None], slurm: Path
) -> None:
    tree(project, {"train.py": TRAIN})
    result = cli("run", *SLURM, "--num-gpus", "1", "-c", "lr=1", "python train.py")
    assert result.exit_code == 0, result.output
    assert "gpus 0" in result.stdout and only_run(cli)["slurm"]["gpus"] == "0"


def spans(cli: Callable[..., Any]) -> list[tuple[float, float]]:
    out = []
    for doc in runs(cli):
        start, end = cli("logs", doc["id"][:8]).stdout.split()[:2]
        out.append((float(start), float(end)))
    return out


def most_at_once(spans: list[tuple[float, float]]) -> int:
    return max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)


STAMPS = "date +%s.%N; sleep 1; date +%s.%N"


def test_a_sweep_is_one_job_array_k_at_a_time(
    project: Path, cli: Callable[..., Any], slurm: Path
) -> None:
    result = cli("sweep", *SLURM, STAMPS, "-c", "i=range(4)", "--parallel", "2")
    assert result.exit_code == 0, result.output
    docs = runs(cli)
    assert len(docs) == 4 and {d["status"] for d in docs} == {"SUCCESS"}
    assert len({d["slurm"]["job"].split("_")[0] for d in docs}) == 1  # one array
    assert most_at_once(spans(cli)) <= 2


def test_an_array_past_the_sites_limit_goes_in_chained_chunks(
    project: Path, cli: Callable[..., Any], slurm: Path, monkeypatch: Any
) -> None:
    monkeypatch.setattr("datmo.core.executor.slurm.max_array_size", lambda: 2)
    result = cli("sweep", *SLURM, STAMPS, "-c", "i=range(5)", "--parallel", "2")
    assert result.exit_code == 0, result.output
    docs = runs(cli)
    assert {d["status"] for d in docs} == {"SUCCESS"}
    assert len({d["slurm"]["job"].split("_")[0] for d in docs}) == 3
    assert most_at_once(spans(cli)) <= 2


@pytest.mark.slow
def test_a_requeued_job_keeps_its_run_and_counts_the_attempt(
    project: Path, cli: Callable[..., Any], slurm: Path
) -> None:
    run_id = cli("run", "-d", *SLURM, "sleep 4").stdout.strip()
    wait_for(lambda: run_doc(cli, run_id)["status"] == "RUNNING", "the job to start", 30)
    job = run_doc(cli, run_id)["slurm"]["job"]
    subprocess.run(["scontrol", "requeue", job], check=True, capture_output=True)
    # Slurm starts a requeued job again once its credential expired (10 s in the test
    # cluster's AuthInfo, 120 s by default), then at its next scheduling pass.
    wait_for(lambda: job_state(job) == "PENDING", "the job to be requeued", 30)
    stopped = run_doc(cli, run_id)
    assert stopped["status"] == "STOPPED" and "cancelled in Slurm" in stopped["error"]
    done = wait_for(
        lambda: run_doc(cli, run_id)["status"] == "SUCCESS", "the requeued job to succeed", 120
    )
    assert done
    doc = run_doc(cli, run_id)
    assert doc["slurm"]["attempts"] == 2 and doc["slurm"]["restarts"] == 1


def test_project_settings_are_the_defaults_and_options_win(
    project: Path, cli: Callable[..., Any], slurm: Path
) -> None:
    for name, value in (("slurm.partition", "debug"), ("slurm.time", "5"), ("slurm.cpus", "1")):
        assert cli("settings", "set", name, value).exit_code == 0
    assert cli("settings", "set", "slurm.memory", "lots").exit_code == 2
    result = cli("run", *SLURM, "--time", "3", "true")
    assert result.exit_code == 0, result.output
    options = only_run(cli)["slurm"]["options"]
    assert options["partition"] == "debug" and options["time"] == "3" and options["cpus"] == 1
    assert "slurm.partition" not in json.dumps(only_run(cli)["config"])


def test_init_executor_slurm_makes_it_the_default(
    tmp_path: Path, cli: Callable[..., Any], monkeypatch: Any, slurm: Path
) -> None:
    folder = tmp_path / "cluster-project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    assert cli("init", "--executor", "slurm").exit_code == 0
    assert cli("run", "true").exit_code == 0
    assert only_run(cli)["executor"] == "slurm"
    assert cli("run", "--partition", "debug", "--executor", "local", "true").exit_code == 125


USER = "datmo-slurm-test"


@pytest.fixture
def user_project(slurm: Path) -> Any:
    """A project of a real non-root user (made for the test), where that user can reach it."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make a user")
    if subprocess.run(["id", USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--no-create-home", USER], check=True)
    import pwd
    import shutil
    import tempfile

    entry = pwd.getpwnam(USER)
    root = Path(tempfile.mkdtemp(prefix="datmo-slurm-", dir="/var/tmp")) / "proj"
    root.mkdir()
    os.chmod(root.parent, 0o755)
    (root / "train.py").write_text("print('as', __import__('os').getuid())\n")
    for path in (root, root / "train.py"):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    yield root, entry
    shutil.rmtree(root.parent, ignore_errors=True)


def their_python() -> str:
    """A Python the test user can run: this one lives under /root when pyenv installed
    it, so Debian's (the same 3.11: the venv's packages load in it)."""
    return "/usr/bin/python3"


def as_user(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    import site
    import sysconfig

    here = str(Path(__file__).resolve().parents[2])
    paths = [here, sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    env = {**os.environ, "HOME": str(cwd), "PYTHONPATH": os.pathsep.join(paths)}
    return subprocess.run(
        ["runuser", "-u", USER, "--", their_python(), "-m", "datmo", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_a_non_root_users_project_runs_as_that_user(user_project: Any) -> None:
    root, entry = user_project
    made = as_user(root, "init", "--executor", "slurm")
    assert made.returncode == 0, made.stderr
    assert as_user(root, "settings", "set", "slurm.python", their_python()).returncode == 0
    done = as_user(root, "run", "python3 train.py")
    assert done.returncode == 0, done.stderr
    assert f"as {entry.pw_uid}" in done.stdout
    doc = json.loads(as_user(root, "ls", "--format", "json").stdout)[0]
    assert doc["status"] == "SUCCESS"
    for path in (root / ".datmo").rglob("*"):
        assert path.stat().st_uid == entry.pw_uid, path


def test_gc_frees_a_submission_once_none_of_its_runs_is_left(
    project: Path, cli: Callable[..., Any], slurm: Path
) -> None:
    assert cli("run", *SLURM, "true").exit_code == 0
    doc = only_run(cli)
    batch = project / ".datmo" / "slurm" / f"{doc['slurm']['batch']}.json"
    assert batch.is_file() and Path(doc["slurm"]["output"]).parent.is_dir()
    assert cli("gc", "--grace", "0").exit_code == 0
    assert batch.is_file()  # its run is still there
    assert cli("delete", doc["id"][:8]).exit_code == 0
    assert cli("gc", "--grace", "0").exit_code == 0
    assert not batch.exists() and not Path(doc["slurm"]["output"]).parent.exists()


def test_where_the_site_keeps_accounts_sacct_answers_for_a_forgotten_job(
    project: Path, cli: Callable[..., Any], slurm: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    run_id = held_run(cli)
    job = run_doc(cli, run_id)["slurm"]["job"]
    pretend_running_elsewhere(project, run_id, beat_age=1000)
    fake_squeue(tmp_path / "bin", "", tmp_path / "log")  # past squeue's memory
    sacct = tmp_path / "bin" / "sacct"
    sacct.write_text(f'#!/bin/sh\necho "{job}|TIMEOUT|node9"\n')
    sacct.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    doc = run_doc(cli, run_id)
    assert doc["status"] == "FAILED" and doc["error"].startswith("TIMEOUT in Slurm"), doc
