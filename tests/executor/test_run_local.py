"""`datmo run --executor local`: the run flow without a container, and the supervisor
that owns each task (detach, logs -f, stop, Ctrl-C, a killed foreground or supervisor)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import run_doc, runs, wait_for

REPO = Path(__file__).resolve().parents[2]
LOCAL = ("--executor", "local")
# A task that ends promptly on SIGTERM, and is still there long enough to be stopped.
LONG = "echo started; sleep 30"


def detached(cli: Callable[..., Any], *args: str) -> str:
    started = time.monotonic()
    result = cli("run", "-d", *LOCAL, *args)
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 20, "run -d should return once the task has started"
    run_id = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"[0-9a-f]{40}", run_id), result.stdout
    return run_id


def snapshot_diff(cli: Callable[..., Any], first: str, second: str) -> dict[str, Any]:
    result = cli("snapshot", "diff", first, second, "--format", "json")
    assert result.exit_code == 0, result.output
    diff: dict[str, Any] = json.loads(result.stdout)
    return diff


def added(diff: dict[str, Any]) -> set[str]:
    return set(diff["code"]["added"]) | set(diff["files"]["added"])


def datmo_process(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "datmo", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def running_id(cli: Callable[..., Any], launcher: subprocess.Popen[str]) -> str:
    """The id of the run `launcher` started, once its supervisor has taken it over."""
    docs = wait_for(
        lambda: [
            r
            for r in runs(cli)
            if r["status"] == "RUNNING" and r["supervisor"]["pid"] != launcher.pid
        ],
        "a RUNNING run record owned by its supervisor",
    )
    run_id: str = docs[0]["id"]
    return run_id


# -- the flow ---------------------------------------------------------------------------


def test_run_records_before_task_after(project: Path, cli: Callable[..., Any], tree: Any) -> None:
    tree(project, {"train.py": "open('model.bin', 'wb').write(bytes(range(256)))\n"})
    result = cli(
        "run", *LOCAL, "-c", "lr=0.01", "-m", "first try", "python3 train.py; echo 'acc: 0.93'"
    )
    assert result.exit_code == 0, result.output
    assert "acc: 0.93" in result.stdout
    (doc,) = runs(cli)
    assert doc["status"] == "SUCCESS"
    assert doc["exit_code"] == 0
    assert doc["executor"] == "local"
    assert doc["message"] == "first try"
    assert doc["config"] == {"lr": 0.01}
    assert doc["metrics"] == {"acc": 0.93}
    assert doc["started_at"] and doc["ended_at"] and doc["duration_s"] is not None
    assert (project / "model.bin").read_bytes() == bytes(range(256))

    # Both snapshots are hidden, and the after one holds what the task wrote.
    visible = json.loads(cli("snapshot", "ls", "--format", "json").stdout)
    every = json.loads(cli("snapshot", "ls", "--all", "--format", "json").stdout)
    before, after = doc["before_snapshot_id"], doc["after_snapshot_id"]
    assert before and after and before != after
    assert {before, after} <= {s["id"] for s in every}
    assert not {before, after} & {s["id"] for s in visible}
    assert added(snapshot_diff(cli, before, after)) == {"model.bin"}
    inspected = json.loads(cli("snapshot", "inspect", after, "--format", "json").stdout)
    info = inspected[0] if isinstance(inspected, list) else inspected
    assert info["run_id"] == doc["id"]
    assert info["config"] == {"lr": 0.01}
    assert info["metrics"] == {"acc": 0.93}


def test_task_exit_code_is_the_run_exit_code(project: Path, cli: Callable[..., Any]) -> None:
    result = cli("run", *LOCAL, "echo failing; exit 3")
    assert result.exit_code == 3, result.output
    (doc,) = runs(cli)
    assert doc["status"] == "FAILED"
    assert doc["exit_code"] == 3
    assert doc["after_snapshot_id"]
    table = cli("ls").stdout
    assert "FAILED (3)" in table


@pytest.mark.parametrize(
    ("command", "code"),
    [("exit 3", 3), ("false", 1), ("cd .", 0)],
)
def test_command_is_a_shell_command(
    project: Path, cli: Callable[..., Any], command: str, code: int
) -> None:
    """The command is run by sh, so its builtins work as the whole command too."""
    result = cli("run", *LOCAL, command)
    assert result.exit_code == code, result.output
    (doc,) = runs(cli)
    assert doc["exit_code"] == code


def test_task_runs_in_the_subfolder_it_was_started_in(
    project: Path, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = project / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)  # datmo walks up to the project; the task starts where you are
    monkeypatch.setenv("FROM_ME", "passed")
    result = cli(
        "run",
        *LOCAL,
        "-e",
        "GREETING=hi",
        "-e",
        "FROM_ME",
        "pwd > where.txt; echo GREETING=$GREETING FROM_ME=$FROM_ME",
    )
    assert result.exit_code == 0, result.output
    assert (sub / "where.txt").read_text().strip() == str(sub)
    assert "GREETING=hi FROM_ME=passed" in result.stdout
    (doc,) = runs(cli)
    record = json.loads((project / ".datmo" / "runs" / f"{doc['id']}.json").read_text())
    assert record["env"] == {"GREETING": "hi", "FROM_ME": "passed"}


def test_command_given_as_words(project: Path, cli: Callable[..., Any]) -> None:
    result = cli("run", *LOCAL, "--", "sh", "-c", "echo two words")
    assert result.exit_code == 0, result.output
    assert "two words" in result.stdout


def test_platform_and_packages_are_recorded(project: Path, cli: Callable[..., Any]) -> None:
    result = cli("run", *LOCAL, "true")
    assert result.exit_code == 0, result.output
    (doc,) = runs(cli)
    task_python = subprocess.run(
        ["python3", "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert doc["platform"]["python"] == task_python
    packages = doc["platform"]["packages"]
    assert packages and all(re.fullmatch(r"[\w.\-]+==\S+", p) for p in packages)
    assert any(p.lower().startswith("click==") for p in packages)


def test_secret_value_never_stored(project: Path, cli: Callable[..., Any]) -> None:
    secret = "s3cr3tvalue"
    result = cli(
        "run", *LOCAL, "-e", f"API_TOKEN={secret}", "-e", "PLAIN=visible", "echo tok=$API_TOKEN"
    )
    assert result.exit_code == 0, result.output
    (doc,) = runs(cli)
    assert doc["secret_env"] == ["API_TOKEN"]
    log = cli("logs", doc["id"])
    assert "tok=***" in log.stdout
    assert secret not in log.stdout
    leaks = [
        str(p.relative_to(project))
        for p in (project / ".datmo").rglob("*")
        if p.is_file() and secret.encode() in p.read_bytes()
    ]
    assert leaks == []


def test_snapshot_create_from_run_makes_after_visible(
    project: Path, cli: Callable[..., Any]
) -> None:
    assert cli("run", *LOCAL, "echo data > out.txt").exit_code == 0
    (doc,) = runs(cli)
    made = cli("snapshot", "create", "--run-id", doc["id"][:8], "-m", "keep this")
    assert made.exit_code == 0, made.output
    snap_id = made.stdout.strip().splitlines()[-1]
    visible = json.loads(cli("snapshot", "ls", "--format", "json").stdout)
    (snap,) = [s for s in visible if s["id"] == snap_id]
    assert snap["message"] == "keep this"
    diff = snapshot_diff(cli, doc["before_snapshot_id"], snap_id)
    assert "out.txt" in added(diff)


# -- detached runs, logs, stop, delete ----------------------------------------------------


def test_detach_logs_follow(project: Path, cli: Callable[..., Any]) -> None:
    run_id = detached(cli, "echo one; sleep 0.5; echo two")
    assert run_doc(cli, run_id)["status"] == "RUNNING"
    followed = cli("logs", "-f", run_id[:8])
    assert followed.exit_code == 0, followed.output
    assert followed.stdout.split() == ["one", "two"]
    assert run_doc(cli, run_id)["status"] == "SUCCESS"
    assert cli("logs", run_id).stdout.split() == ["one", "two"]


def test_stop_detached_run(project: Path, cli: Callable[..., Any]) -> None:
    run_id = detached(cli, LONG)
    wait_for(lambda: "started" in cli("logs", run_id).stdout, "the task's first output")
    begun = time.monotonic()
    stopped = cli("stop", run_id[:8])
    assert stopped.exit_code == 0, stopped.output
    assert time.monotonic() - begun < 25  # not the 30 s the task would take
    doc = run_doc(cli, run_id)
    assert doc["status"] == "STOPPED"
    assert doc["after_snapshot_id"]
    assert doc["ended_at"]

    again = cli("stop", run_id[:8])
    assert again.exit_code != 0
    assert "not running" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_stop_all(project: Path, cli: Callable[..., Any]) -> None:
    ids = [detached(cli, LONG), detached(cli, LONG)]
    result = cli("stop", "--all")
    assert result.exit_code == 0, result.output
    assert {run_doc(cli, i)["status"] for i in ids} == {"STOPPED"}
    assert "no runs are running" in cli("stop", "--all").stdout


def test_delete_refuses_running_then_deletes(project: Path, cli: Callable[..., Any]) -> None:
    run_id = detached(cli, LONG)
    refused = cli("delete", run_id)
    assert refused.exit_code != 0
    assert "running" in refused.stderr
    assert run_doc(cli, run_id)["status"] == "RUNNING"
    assert cli("stop", run_id).exit_code == 0
    deleted = cli("delete", run_id[:8])
    assert deleted.exit_code == 0, deleted.output
    assert runs(cli) == []
    assert not (project / ".datmo" / "run-data" / run_id).exists()
    assert cli("logs", run_id).exit_code != 0


# -- the supervisor: a run always ends recorded ---------------------------------------------


def test_ctrl_c_stops_and_exits_130(project: Path, cli: Callable[..., Any]) -> None:
    proc = datmo_process("run", *LOCAL, LONG, cwd=project)
    try:
        run_id = running_id(cli, proc)
        wait_for(lambda: "started" in cli("logs", run_id).stdout, "the task's first output")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    doc = run_doc(cli, run_id)
    assert doc["status"] == "STOPPED"
    assert doc["after_snapshot_id"]


CHECKPOINT = """\
import time
try:
    print("started", flush=True)
    time.sleep(60)
except KeyboardInterrupt:
    open("checkpoint.txt", "w").write("saved")
    print("final test loss: 0.5", flush=True)
    raise
"""


@pytest.mark.parametrize("how", ["ctrl-c", "datmo stop"])
def test_a_stop_is_a_keyboard_interrupt_first(
    project: Path, cli: Callable[..., Any], tree: Any, how: str
) -> None:
    # As in a terminal: the task gets SIGINT first, so its KeyboardInterrupt handler runs.
    tree(project, {"train.py": CHECKPOINT})
    proc = datmo_process("run", *LOCAL, "python3 train.py", cwd=project)
    try:
        run_id = running_id(cli, proc)
        wait_for(lambda: "started" in cli("logs", run_id).stdout, "the task's first output")
        if how == "ctrl-c":
            proc.send_signal(signal.SIGINT)
        else:
            assert cli("stop", run_id).exit_code == 0
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    assert "final test loss: 0.5" in out
    doc = run_doc(cli, run_id)
    assert doc["status"] == "STOPPED"
    held = snapshot_diff(cli, doc["before_snapshot_id"], doc["after_snapshot_id"])
    assert "checkpoint.txt" in added(held)  # the after snapshot has what it saved


def test_ctrl_c_on_logs_follow_stops_following_only(project: Path, cli: Callable[..., Any]) -> None:
    run_id = detached(cli, LONG)
    follower = datmo_process("logs", "-f", run_id, cwd=project)
    try:
        wait_for(lambda: "started" in cli("logs", run_id).stdout, "the task's first output")
        time.sleep(0.3)
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=30)
    finally:
        follower.kill()
        follower.wait()
    assert follower.returncode == 130 and "Traceback" not in err, err
    assert run_doc(cli, run_id)["status"] == "RUNNING"  # the run goes on
    assert cli("stop", run_id).exit_code == 0


def test_datmo_stop_ends_foreground_run_with_130(project: Path, cli: Callable[..., Any]) -> None:
    proc = datmo_process("run", *LOCAL, LONG, cwd=project)
    try:
        run_id = running_id(cli, proc)
        assert cli("stop", run_id).exit_code == 0
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    assert run_doc(cli, run_id)["status"] == "STOPPED"


def test_killed_foreground_run_is_stopped_and_recorded(
    project: Path, cli: Callable[..., Any]
) -> None:
    proc = datmo_process(
        "run", *LOCAL, "echo started; sleep 30; echo finished > late.txt", cwd=project
    )
    try:
        run_id = running_id(cli, proc)
        wait_for(lambda: "started" in cli("logs", run_id).stdout, "the task's first output")
        proc.kill()
        proc.wait()
    finally:
        proc.kill()
        proc.wait()
    doc = wait_for(
        lambda: (d := run_doc(cli, run_id))["status"] != "RUNNING" and d, "the run to be recorded"
    )
    assert doc["status"] == "STOPPED"
    assert doc["after_snapshot_id"]
    assert not (project / "late.txt").exists()


def test_detached_run_outlives_its_datmo_process(project: Path, cli: Callable[..., Any]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "datmo", "run", "-d", *LOCAL, "sleep 0.5; echo done > done.txt"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip().splitlines()[-1]
    doc = wait_for(
        lambda: (d := run_doc(cli, run_id))["status"] != "RUNNING" and d, "the run to end"
    )
    assert doc["status"] == "SUCCESS"
    assert (project / "done.txt").read_text().strip() == "done"


def test_killed_supervisor_shows_lost_and_stop_settles_it(
    project: Path, cli: Callable[..., Any]
) -> None:
    run_id = detached(cli, "echo started; echo $$ > task.pid; sleep 30")
    wait_for(lambda: (project / "task.pid").is_file() and (project / "task.pid").read_text(), "pid")
    task_pid = int((project / "task.pid").read_text())
    supervisor = run_doc(cli, run_id)["supervisor"]["pid"]
    os.kill(supervisor, signal.SIGKILL)
    try:
        doc = wait_for(
            lambda: (d := run_doc(cli, run_id))["status"] == "LOST" and d, "ls to show LOST"
        )
        assert doc["status"] == "LOST"
        assert "LOST" in cli("ls").stdout

        result = cli("stop", run_id)
        assert result.exit_code == 0, result.output
        record = json.loads((project / ".datmo" / "runs" / f"{run_id}.json").read_text())
        assert record["status"] == "LOST"
        assert record["ended_at"]
        # "For a LOST run it removes what was left behind": the task process too.
        assert wait_for(lambda: not _alive(task_pid), "the orphaned task to end", timeout=3)
    finally:
        if _alive(task_pid):
            os.killpg(task_pid, signal.SIGKILL)  # the task leads its own process group


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_stop_as_soon_as_the_record_appears(project: Path, cli: Callable[..., Any]) -> None:
    """`datmo stop` on a RUNNING record, before its supervisor has written itself in."""
    records = project / ".datmo" / "runs"
    proc = datmo_process("run", "-d", *LOCAL, "sleep 3; echo done > done.txt", cwd=project)
    try:
        deadline = time.monotonic() + 20
        run_id = None
        while run_id is None and time.monotonic() < deadline:
            for path in records.glob("*.json"):
                with contextlib.suppress(ValueError, OSError):
                    run_id = json.loads(path.read_text())["id"]
            time.sleep(0.005)
        assert run_id, "no run record appeared"
        result = cli("stop", run_id)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert result.exit_code == 0, result.output
    assert run_doc(cli, run_id)["status"] == "STOPPED"
    assert not (project / "done.txt").exists()
    assert proc.returncode == 0, err  # `run -d` still reports the id it started
    assert out.strip().splitlines()[-1] == run_id


def test_a_local_run_records_the_python_it_ran_in_not_a_docker_environment(
    project: Path, cli: Callable[..., Any]
) -> None:
    assert cli("run", *LOCAL, "true").exit_code == 0
    (doc,) = runs(cli)
    assert doc["environment_id"] is None and doc["image_id"] is None
    assert doc["platform"]["python"].count(".") == 2  # the python3 the task ran with
    assert isinstance(doc["platform"]["packages"], list) and doc["platform"]["executable"]
    refused = cli("run", *LOCAL, "--environment", "python", "true")
    assert refused.exit_code == 125 and "a local run uses this machine's own Python" in (
        refused.stderr
    )


def test_version_option_prints_the_version(cli: Callable[..., Any]) -> None:
    from datmo import __version__

    for args in (["--version"], ["version"]):
        result = cli(*args)
        assert result.exit_code == 0 and result.stdout.strip() == f"datmo {__version__}"
