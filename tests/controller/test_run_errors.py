"""Bad input to `datmo run` and friends: one line on stderr, a non-zero exit (125 for
run), and nothing left behind: no run record, no container."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
MARK = "datmo.test=test_run_errors"
DOCKERFILE = f"FROM datmo-test/busybox:latest\nLABEL {MARK}\n"


def docker(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True, env=env
    ).stdout


@pytest.fixture(scope="module")
def test_images() -> Iterator[None]:
    yield
    ids = docker("images", "-aq", "--filter", f"label={MARK}").split()
    if ids:
        subprocess.run(["docker", "rmi", "-f", *set(ids)], capture_output=True)


@pytest.fixture
def dproject(project: Path, busybox_image: str, test_images: None) -> Path:
    (project / "Dockerfile").write_text(DOCKERFILE)
    return project


def project_containers(project: Path) -> list[str]:
    info = json.loads((project / ".datmo" / "project.json").read_text())
    return docker("ps", "-aq", "--filter", f"label=datmo.project={info['id']}").split()


def refused(result: Any, *words: str, code: int | None = 125) -> str:
    """The one-line error of a refused command; returns it."""
    if code is None:
        assert result.exit_code != 0, result.output
    else:
        assert result.exit_code == code, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("datmo: error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.output
    for word in words:
        assert word.lower() in errors[0].lower(), errors[0]
    line: str = errors[0]
    return line


def nothing_left(project: Path, cli: Callable[..., Any], docker_too: bool = True) -> None:
    listing = cli("ls", "--format", "json")
    assert listing.exit_code == 0, listing.output
    assert json.loads(listing.stdout) == []
    assert list((project / ".datmo" / "runs").glob("*.json")) == []
    assert list((project / ".datmo" / "run-data").iterdir()) == []
    if docker_too:
        assert project_containers(project) == []


# -- options refused before anything happens ----------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["-p", "abc"], ["-p 'abc'"]),
        (["-p", "1:2:3:4"], ["1:2:3:4"]),
        (["-p", "70000:80"], ["70000:80"]),
        (["--memory", "lots"], ["--memory", "lots"]),
        (["--gpus", "x"], ["--gpus"]),
        (["--cpus", "0"], ["--cpus"]),
        (["--data", "/no/such/folder"], ["/no/such/folder"]),
        (["--data", "/var/run/docker.sock"], ["Docker socket"]),
        (["--data", "/var/run/docker.sock>sock:rw"], ["Docker socket"]),
        (["--environment", "ffff0000"], ["ffff0000"]),
        (["-e", "1BAD=x"], ["1BAD"]),
    ],
)
def test_bad_option_refused(
    project: Path, cli: Callable[..., Any], args: list[str], words: list[str]
) -> None:
    result = cli("run", *args, "echo ran > ran.txt")
    line = refused(result, *words)
    assert len(line) < 300
    assert not (project / "ran.txt").exists()
    nothing_left(project, cli, docker_too=False)


@pytest.mark.parametrize(
    "args",
    [["--gpu", "--gpus", "0"], ["--cpus", "abc"]],
    ids=["gpu-and-gpus", "cpus-not-a-number"],
)
def test_bad_option_from_parsing_exits_125(
    project: Path, cli: Callable[..., Any], args: list[str]
) -> None:
    """Docs: 125 when datmo itself fails (bad option, ...), as `docker run` does."""
    result = cli("run", "--executor", "local", *args, "true")
    assert result.exit_code == 125, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    nothing_left(project, cli, docker_too=False)


def test_port_in_use_refused(project: Path, cli: Callable[..., Any]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = cli("run", "--executor", "docker", "-p", f"{port}:80", "echo ran > ran.txt")
    refused(result, str(port), "not free")
    assert not (project / "ran.txt").exists()
    nothing_left(project, cli, docker_too=False)


@pytest.mark.parametrize("command", ["logs", "stop", "rerun", "delete"])
def test_unknown_run_id(project: Path, cli: Callable[..., Any], command: str) -> None:
    line = refused(cli(command, "abcd1234"), "abcd1234", code=None)
    # The hint must name the listing command; `datmo run ls` would start a task running `ls`.
    assert "datmo run ls" not in line
    nothing_left(project, cli, docker_too=False)


def test_stop_without_id(project: Path, cli: Callable[..., Any]) -> None:
    refused(cli("stop"), "--all", code=None)


# -- refused by the engine -------------------------------------------------------------------


@pytest.mark.docker
def test_dockerfile_that_fails_to_build(
    project: Path, cli: Callable[..., Any], busybox_image: str, test_images: None
) -> None:
    (project / "Dockerfile").write_text(DOCKERFILE + "RUN echo about to fail && exit 7\n")
    result = cli("run", "echo ran > ran.txt")
    refused(result, "did not build", "non-zero code: 7")
    assert not (project / "ran.txt").exists()
    nothing_left(project, cli)


@pytest.mark.docker
def test_engine_not_running(
    dproject: Path, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as m:
        m.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
        result = cli("run", "echo ran > ran.txt")
    refused(result, "/nonexistent.sock", "start", "--executor local")
    assert not (dproject / "ran.txt").exists()
    nothing_left(dproject, cli)


@pytest.mark.docker
def test_gpu_without_gpu_runtime(dproject: Path, cli: Callable[..., Any]) -> None:
    result = cli("run", "--gpu", "echo ran > ran.txt")
    refused(result, "GPU")
    assert not (dproject / "ran.txt").exists()
    nothing_left(dproject, cli)


@pytest.mark.docker
def test_gpus_list_without_gpu_runtime(dproject: Path, cli: Callable[..., Any]) -> None:
    result = cli("run", "--gpus", "0", "echo ran > ran.txt")
    refused(result, "GPU")
    assert not (dproject / "ran.txt").exists()
    nothing_left(dproject, cli)


@pytest.mark.docker
def test_docker_run_with_unknown_environment(dproject: Path, cli: Callable[..., Any]) -> None:
    refused(cli("run", "--environment", "nosuchenv", "true"), "nosuchenv")
    nothing_left(dproject, cli)
