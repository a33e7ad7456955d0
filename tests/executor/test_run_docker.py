"""`datmo run` in Docker: the container contract (owner, HOME, hidden .datmo, mounts,
ports, limits, labels), metrics from inside the task, secrets, stop and LOST runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_doc, runs, wait_for

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
MARK = "datmo.test=test_run_docker"
DOCKERFILE = f"FROM datmo-test/python:latest\nLABEL {MARK}\n"
# sh as PID 1 ignores SIGTERM unless it traps it; with the trap a stop takes no 10 s grace.
LONG = "trap 'exit 0' TERM; echo started; sleep 30 & wait"


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def test_images() -> Iterator[None]:
    """Images built from this module's Dockerfile go when the module is done."""
    yield
    ids = docker("images", "-aq", "--filter", f"label={MARK}").split()
    if ids:
        subprocess.run(["docker", "rmi", "-f", *set(ids)], capture_output=True)


def _remove_containers(project: Path) -> None:
    info = json.loads((project / ".datmo" / "project.json").read_text())
    ids = docker("ps", "-aq", "--filter", f"label=datmo.project={info['id']}").split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


@pytest.fixture
def dproject(project: Path, python_image: str, test_images: None) -> Iterator[Path]:
    """An initialised project whose environment is a tiny Dockerfile on the python image."""
    (project / "Dockerfile").write_text(DOCKERFILE)
    yield project
    _remove_containers(project)


@pytest.fixture
def theirs(
    foreign_project: Path, python_image: str, test_images: None, cli: Callable[..., Any]
) -> Iterator[Path]:
    """The same, in a folder owned by uid 4242 (datmo itself runs as root)."""
    assert cli("init", "--name", "theirs").exit_code == 0
    (foreign_project / "Dockerfile").write_text(DOCKERFILE)
    yield foreign_project
    _remove_containers(foreign_project)


def containers_of(run_id: str) -> list[str]:
    return docker("ps", "-aq", "--filter", f"label=datmo.run={run_id}").split()


def container_removed(run_id: str, timeout: float = 10.0) -> bool:
    """The supervisor removes the container; it may still be at it as the record ends."""
    deadline = time.monotonic() + timeout
    while containers_of(run_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    return containers_of(run_id) == []


def detached(cli: Callable[..., Any], *args: str) -> str:
    result = cli("run", "-d", *args)
    assert result.exit_code == 0, result.output
    return str(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def added(cli: Callable[..., Any], doc: dict[str, Any]) -> set[str]:
    result = cli(
        "snapshot",
        "diff",
        doc["before_snapshot_id"],
        doc["after_snapshot_id"],
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    diff = json.loads(result.stdout)
    return set(diff["code"]["added"]) | set(diff["files"]["added"])


def fields(stdout: str) -> dict[str, str]:
    """The task's `key=value` lines."""
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


# -- the flow -----------------------------------------------------------------------------


def test_exit_code_and_image_reused(dproject: Path, cli: Callable[..., Any]) -> None:
    first = cli("run", "echo in-container; exit 3")
    assert first.exit_code == 3, first.output
    assert "in-container" in first.stdout
    second = cli("run", "true")
    assert second.exit_code == 0, second.output
    assert "Step " not in second.stderr  # nothing was built the second time
    failed, ok = sorted(runs(cli), key=lambda r: r["created_at"])
    assert (failed["status"], failed["exit_code"]) == ("FAILED", 3)
    assert (ok["status"], ok["exit_code"]) == ("SUCCESS", 0)
    assert failed["executor"] == "docker"
    assert failed["image_id"] and failed["image_id"] == ok["image_id"]
    assert failed["environment_id"] == ok["environment_id"]
    assert container_removed(failed["id"]) and container_removed(ok["id"])


def test_container_contract(theirs: Path, cli: Callable[..., Any], tmp_path: Path) -> None:
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    for folder in (ro, rw):
        folder.mkdir()
        os.chown(folder, 4242, 4242)  # only the read-only mount may stop a write
    (ro / "input.txt").write_text("raw data\n")
    script = """
echo "uid=$(id -u)"
echo "gid=$(id -g)"
echo "home=$HOME"
echo "user=$USER"
echo "pwd=$(pwd)"
echo "flag=$FLAG"
echo "datmo_entries=$(ls -A .datmo | wc -l)"
if touch .datmo/x 2>/dev/null; then echo datmo_writable=yes; else echo datmo_writable=no; fi
mkdir -p "$HOME/.cache" && echo cached > "$HOME/.cache/pip.txt" && echo home_writable=yes
if grep -q ' /datmo/metrics.jsonl ' /proc/mounts; then echo metrics_mount=yes; fi
if touch /data/raw/new 2>/dev/null; then echo ro_writable=yes; else echo ro_writable=no; fi
echo "ro_content=$(cat /data/raw/input.txt)"
if touch /data/rw/new; then echo rw_writable=yes; fi
echo made > created.txt
"""
    (theirs / "check.sh").write_text(script)
    result = cli(
        "run",
        "-e",
        "FLAG=on",
        "--data",
        f"{ro}>raw",
        "--data",
        f"{rw}:rw",
        "sh check.sh",
    )
    assert result.exit_code == 0, result.output
    seen = fields(result.stdout)
    assert (seen["uid"], seen["gid"]) == ("4242", "4242")
    assert (theirs / "created.txt").stat().st_uid == 4242
    assert (theirs / "created.txt").stat().st_gid == 4242
    assert seen["pwd"] and not seen["home"].startswith(seen["pwd"])
    assert seen["user"]
    assert seen["flag"] == "on"
    assert seen["datmo_entries"] == "0"
    assert seen["datmo_writable"] == "no"
    assert seen["home_writable"] == "yes"
    assert seen.get("metrics_mount") == "yes"
    assert seen["ro_writable"] == "no"
    assert seen["ro_content"] == "raw data"
    assert seen.get("rw_writable") == "yes"
    assert (rw / "new").exists()
    assert not (ro / "new").exists()
    (doc,) = runs(cli)
    assert added(cli, doc) == {"created.txt"}  # HOME's cache is not in the after snapshot


def test_ports_limits_labels_while_running(dproject: Path, cli: Callable[..., Any]) -> None:
    local_port, public_port = free_port(), free_port()
    run_id = detached(
        cli,
        "-p",
        f"{local_port}:8000",
        "-p",
        f"0.0.0.0:{public_port}:8001",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        LONG,
    )
    (container,) = containers_of(run_id)
    (info,) = json.loads(docker("inspect", container))
    host = info["HostConfig"]
    assert host["PortBindings"]["8000/tcp"] == [
        {"HostIp": "127.0.0.1", "HostPort": str(local_port)}
    ]
    assert host["PortBindings"]["8001/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": str(public_port)}]
    assert host["Privileged"] is False
    assert host["Memory"] == 64 << 20
    assert host["NanoCpus"] == 500_000_000
    assert info["Config"]["Labels"]["datmo.run"] == run_id
    assert not [m for m in info["Mounts"] if "docker.sock" in (m.get("Source") or "")]
    assert run_doc(cli, run_id)["container_id"] == info["Id"]

    stopped = cli("stop", run_id[:8])
    assert stopped.exit_code == 0, stopped.output
    doc = run_doc(cli, run_id)
    assert doc["status"] == "STOPPED"
    assert doc["after_snapshot_id"]
    assert container_removed(run_id)
    again = cli("stop", run_id)
    assert again.exit_code != 0
    assert "not running" in again.stderr


def test_detach_and_follow(dproject: Path, cli: Callable[..., Any]) -> None:
    run_id = detached(cli, "echo one; sleep 1; echo two")
    followed = cli("logs", "-f", run_id)
    assert followed.exit_code == 0, followed.output
    assert followed.stdout.split() == ["one", "two"]
    assert run_doc(cli, run_id)["status"] == "SUCCESS"
    assert container_removed(run_id)


# -- inside the task: metrics, config, files, secrets ----------------------------------------


def test_sdk_metrics_config_and_files(dproject: Path, cli: Callable[..., Any], tree: Any) -> None:
    tree(
        dproject,
        {
            "train.py": (
                "import datmo\n"
                "datmo.log_config(lr=0.1, optimizer='sgd')\n"
                "for i in range(3):\n"
                "    datmo.log_metrics(step=i, loss=1.0 / (i + 1))\n"
                "open('model.bin', 'wb').write(b'weights')\n"
                "print('acc: 0.9')\n"
                "print('epochs: 3')\n"
            )
        },
    )
    result = cli("run", "-c", "batch=32", "python3 train.py")
    assert result.exit_code == 0, result.output
    (doc,) = runs(cli)
    assert doc["config"] == {"batch": 32, "lr": 0.1, "optimizer": "sgd"}
    assert doc["metrics"] == {"loss": 1.0 / 3, "acc": 0.9, "epochs": 3}
    assert isinstance(doc["metrics"]["epochs"], int)
    from datmo.core.storage import seriesview
    from datmo.core.storage.store import Store

    loss = seriesview.full(Store(dproject), doc["id"], "m:loss")
    assert [(step, value) for step, value, _ in loss] == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    assert "model.bin" in added(cli, doc)
    after = json.loads(
        cli("snapshot", "inspect", doc["after_snapshot_id"], "--format", "json").stdout
    )
    after = after[0] if isinstance(after, list) else after
    assert after["config"] == doc["config"]
    assert after["metrics"] == doc["metrics"]


def test_the_container_gets_the_runs_config_and_keeps_its_pythonpath(
    dproject: Path, cli: Callable[..., Any], tree: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree(
        dproject,
        {
            "config.json": '{"lr": 0.1, "seed": 3}',
            "lib": {"mylib.py": "X = 42\n"},
            "src": {
                "show.py": (
                    "import json, os, sys, mylib, datmo\n"
                    "print(json.dumps({'argv': sys.argv[1:], 'sdk': datmo.config(),\n"
                    "  'env': json.loads(os.environ['DATMO_CONFIG']), 'cwd': os.getcwd(),\n"
                    "  'file': json.load(open('../config.json')), 'x': mylib.X}))\n"
                )
            },
        },
    )
    monkeypatch.chdir(dproject / "src")
    result = cli(
        "run", "-e", "PYTHONPATH=/workspace/lib", "-c", "lr=0.3", "python3 show.py --lr {lr}"
    )
    assert result.exit_code == 0, result.output
    got = json.loads(next(x for x in result.stdout.splitlines() if x.startswith("{")))
    want = {"lr": 0.3, "seed": 3}
    assert got == {
        "argv": ["--lr", "0.3"],
        "sdk": want,
        "env": want,
        "cwd": "/workspace/src",
        "file": want,
        "x": 42,
    }
    assert runs(cli)[0]["config"] == want


def test_secret_is_redacted_and_never_stored(dproject: Path, cli: Callable[..., Any]) -> None:
    secret = "s3cr3tvalue"
    result = cli("run", "-e", f"API_TOKEN={secret}", "echo token=$API_TOKEN")
    assert result.exit_code == 0, result.output
    (doc,) = runs(cli)
    assert doc["secret_env"] == ["API_TOKEN"]
    assert "token=***" in cli("logs", doc["id"]).stdout
    leaks = [
        str(p.relative_to(dproject))
        for p in (dproject / ".datmo").rglob("*")
        if p.is_file() and secret.encode() in p.read_bytes()
    ]
    assert leaks == []


# -- the supervisor ----------------------------------------------------------------------------


def test_killed_foreground_stops_container(dproject: Path, cli: Callable[..., Any]) -> None:
    assert cli("environment", "build").exit_code == 0  # keep the build out of the wait below
    proc = subprocess.Popen(
        [sys.executable, "-m", "datmo", "run", LONG],
        cwd=dproject,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        doc = wait_for(
            lambda: [
                r
                for r in runs(cli)
                if r["status"] == "RUNNING" and r["supervisor"]["pid"] != proc.pid
            ],
            "the supervisor to take the run over",
        )[0]
        wait_for(lambda: "started" in cli("logs", doc["id"]).stdout, "the task's first output")
    finally:
        proc.kill()
        proc.wait()
    final = wait_for(
        lambda: (d := run_doc(cli, doc["id"]))["status"] != "RUNNING" and d, "a final record"
    )
    assert final["status"] == "STOPPED"
    assert final["after_snapshot_id"]
    assert container_removed(doc["id"])


def test_killed_supervisor_is_lost_and_stop_cleans_up(
    dproject: Path, cli: Callable[..., Any]
) -> None:
    run_id = detached(cli, LONG)
    wait_for(lambda: "started" in cli("logs", run_id).stdout, "the task's first output")
    os.kill(run_doc(cli, run_id)["supervisor"]["pid"], signal.SIGKILL)
    wait_for(lambda: run_doc(cli, run_id)["status"] == "LOST", "ls to show LOST")
    assert "LOST" in cli("ls").stdout
    assert containers_of(run_id), "the container outlives its supervisor"

    result = cli("stop", run_id)
    assert result.exit_code == 0, result.output
    assert containers_of(run_id) == []
    record = json.loads((dproject / ".datmo" / "runs" / f"{run_id}.json").read_text())
    assert record["status"] == "LOST"
    assert record["ended_at"]
    assert run_doc(cli, run_id)["status"] == "LOST"
