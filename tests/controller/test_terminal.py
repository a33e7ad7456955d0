"""`datmo terminal`: a shell in the project's environment, recorded as a run of type
"terminal". Driven through a pseudo-terminal, as a person at a keyboard would."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import UNUSED_UID
from ptyterm import Terminal

REPO = Path(__file__).resolve().parents[2]
MARK = "datmo.test=test_terminal"
PROMPT = (b"$ ", b"# ")
CLI = Callable[..., Any]


def only_run(cli: CLI) -> dict[str, Any]:
    result = cli("ls", "--format", "json")
    assert result.exit_code == 0, result.output
    (doc,) = json.loads(result.stdout)
    return dict(doc)


def remove_leftovers(root: Path) -> None:
    pid = json.loads((root / ".datmo" / "project.json").read_text())["id"]
    for what in (["ps", "-aq"], ["images", "-q"]):
        ids = subprocess.run(
            ["docker", *what, "--filter", f"label=datmo.project={pid}"],
            capture_output=True,
            text=True,
        ).stdout.split()
        if ids:
            rm = ["rm", "-f"] if what[0] == "ps" else ["rmi", "-f"]
            subprocess.run(["docker", *rm, *set(ids)], capture_output=True)


def containers_of(run_id: str) -> list[str]:
    return subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=datmo.run={run_id}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def shell_session(term: Terminal) -> None:
    """Type a command, read its result, leave with exit code 3."""
    term.wait_attached()
    term.type("echo hi-$((40+2))\r")  # the echoed keystrokes hold no "hi-42"; the output does
    term.expect(b"hi-42")
    term.type("exit 3\r")
    assert term.wait() == 3, term.seen


def check_recorded(cli: CLI, executor: str) -> dict[str, Any]:
    doc = only_run(cli)
    assert doc["type"] == "terminal", doc
    assert doc["status"] == "FAILED", doc
    assert doc["exit_code"] == 3, doc
    assert doc["executor"] == executor, doc
    assert doc["after_snapshot_id"], doc
    assert "hi-42" in cli("logs", doc["id"]).stdout
    return doc


def test_local_terminal(project: Path, cli: CLI, terminal: Callable[..., Terminal]) -> None:
    shell_session(terminal("terminal", "--executor", "local"))
    check_recorded(cli, "local")


def test_local_terminal_runs_as_the_project_owner(
    foreign_project: Path, cli: CLI, terminal: Callable[..., Terminal]
) -> None:
    assert cli("init", "--name", "theirs").exit_code == 0
    term = terminal("terminal", "--executor", "local")
    term.wait_attached()
    term.type("echo uid-$(id -u)\r")
    term.expect(f"uid-{UNUSED_UID}".encode())
    term.type("exit\r")
    assert term.wait() == 0, term.seen
    assert only_run(cli)["status"] == "SUCCESS"


def test_local_terminal_shows_the_prompt_before_any_key(
    project: Path, terminal: Callable[..., Terminal]
) -> None:
    """The shell's first prompt races datmo attaching the terminal; it must not be lost.
    Several sessions, since any one of them can win the race by luck."""
    for _ in range(8):
        term = terminal("terminal", "--executor", "local")
        term.wait_attached()
        term.expect(*PROMPT, timeout=5)
        term.type("exit\r")
        assert term.wait() == 0, term.seen


class FakeTask:
    """What the relay needs of a task handle: somewhere to send keys and the size."""

    def __init__(self) -> None:
        self.keys = b""

    def send_input(self, data: bytes) -> None:
        self.keys += data

    def resize(self, rows: int, cols: int) -> None:
        pass


def test_relay_keeps_output_until_the_terminal_attaches(tmp_path: Path) -> None:
    """A shell prints its prompt as it starts, before `datmo terminal` has connected: the
    prompt must still reach the screen (the end-to-end test above can win that race)."""
    from datmo.core.task.ttyrelay import NAME, RelayServer

    relay = RelayServer(tmp_path, FakeTask(), None)
    try:
        relay.send(b"root@box:/workspace# ")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as screen:
            screen.connect(str(tmp_path / NAME))
            screen.sendall(b"SIZE 24 80\n")
            screen.settimeout(5)
            try:
                shown = screen.recv(4096)
            except TimeoutError:
                shown = b""
        assert shown == b"root@box:/workspace# "
    finally:
        relay.close()


@pytest.fixture
def python_project(docker_project: Path, python_image: str, cli: CLI) -> Iterator[Path]:
    # A label of its own: this project's image is its own, removed with the project.
    (docker_project / "Dockerfile").write_text(
        f"FROM {python_image}\nLABEL {MARK} datmo.test.nonce={uuid.uuid4().hex}\n"
    )
    built = cli("environment", "build")
    assert built.exit_code == 0, built.output
    yield docker_project
    remove_leftovers(docker_project)


@pytest.mark.docker
def test_docker_terminal(python_project: Path, cli: CLI, terminal: Callable[..., Terminal]) -> None:
    shell_session(terminal("terminal", "--executor", "docker"))
    doc = check_recorded(cli, "docker")
    deadline = time.monotonic() + 15
    while containers_of(doc["id"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert containers_of(doc["id"]) == []


@pytest.mark.docker
def test_docker_terminal_shows_the_prompt_before_any_key(
    python_project: Path, terminal: Callable[..., Terminal]
) -> None:
    term = terminal("terminal", "--executor", "docker")
    term.wait_attached()
    term.expect(*PROMPT, timeout=10)
    term.type("exit\r")
    assert term.wait() == 0, term.seen
