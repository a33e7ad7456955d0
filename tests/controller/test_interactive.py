"""`datmo run -i`: the task gets your terminal. Driven here through a pseudo-terminal, as a
person at a keyboard would: type a command, read its output, exit with a code."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ptyterm import Terminal

REPO = Path(__file__).resolve().parents[2]
MARK = "datmo.test=test_interactive"


def only_run(cli: Callable[..., Any]) -> dict[str, Any]:
    (doc,) = json.loads(cli("ls", "--format", "json").stdout)
    return dict(doc)


def test_local_interactive_shell(
    project: Path, cli: Callable[..., Any], terminal: Callable[..., Terminal]
) -> None:
    term = terminal("run", "-i", "--executor", "local", "sh")
    term.wait_attached()
    term.type("echo hi-$((40+2))\r")
    term.expect(b"hi-42")
    # Ctrl-C reaches the task's foreground job, not datmo: the shell carries on.
    term.type("sleep 30\r")
    time.sleep(0.5)
    term.type("\x03")
    term.type("echo back-$((1+1))\r")
    term.expect(b"back-2", timeout=10)
    term.type("exit 3\r")
    assert term.wait() == 3, term.seen
    doc = only_run(cli)
    assert doc["status"] == "FAILED"
    assert doc["exit_code"] == 3
    assert doc["after_snapshot_id"]
    assert "hi-42" in cli("logs", doc["id"]).stdout
    # The terminal is given back as it was found (not left in raw mode).
    assert termios.tcgetattr(term.master)[3] & termios.ICANON


def test_local_interactive_success(
    project: Path, cli: Callable[..., Any], terminal: Callable[..., Terminal]
) -> None:
    term = terminal("run", "-i", "--executor", "local", "sh")
    term.wait_attached()
    term.type("echo made > typed.txt; exit\r")
    assert term.wait() == 0, term.seen
    assert (project / "typed.txt").read_text() == "made\n"
    assert only_run(cli)["status"] == "SUCCESS"


def test_keys_typed_before_the_task_starts_reach_it(
    project: Path, cli: Callable[..., Any], terminal: Callable[..., Terminal]
) -> None:
    """Typing ahead while datmo starts the task must not lose the keystrokes."""
    term = terminal("run", "-i", "--executor", "local", "sh")
    term.type("echo early-$((1+1))\r")
    term.wait_attached()
    term.expect(b"early-2", timeout=2.5)
    term.type("exit\r")
    assert term.wait() == 0, term.seen


def test_output_before_the_terminal_attaches_is_shown(
    project: Path, cli: Callable[..., Any], terminal: Callable[..., Terminal]
) -> None:
    """What the task printed before `datmo run -i` attached (a prompt, a banner) is shown."""
    term = terminal(
        "run", "-i", "--executor", "local", 'echo ready-$((1+1)); read x; echo "got-$x"'
    )
    records = project / ".datmo" / "runs"

    def supervised() -> dict[str, Any] | None:
        for path in records.glob("*.json"):
            with contextlib.suppress(ValueError, OSError):
                doc = json.loads(path.read_text())
                if doc["supervisor"].get("pid") not in (None, term.proc.pid):
                    return dict(doc)
        return None

    deadline = time.monotonic() + 20
    while (doc := supervised()) is None:
        assert time.monotonic() < deadline, "the supervisor never took the run over"
        time.sleep(0.002)
    # Hold `datmo run -i` back (it waits for the task to start) until the task has spoken.
    os.kill(term.proc.pid, signal.SIGSTOP)
    try:
        log = project / ".datmo" / "run-data" / doc["id"] / "output.log"
        while b"ready-2" not in log.read_bytes():
            assert time.monotonic() < deadline, "the task never printed"
            time.sleep(0.02)
    finally:
        os.kill(term.proc.pid, signal.SIGCONT)
    term.wait_attached()
    term.expect(b"ready-2", timeout=2.5)
    term.type("yes\r")
    term.expect(b"got-yes")
    assert term.wait() == 0, term.seen


@pytest.fixture
def dproject(project: Path, busybox_image: str) -> Iterator[Path]:
    (project / "Dockerfile").write_text(f"FROM datmo-test/busybox:latest\nLABEL {MARK}\n")
    yield project
    info = json.loads((project / ".datmo" / "project.json").read_text())
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=datmo.project={info['id']}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    if left:
        subprocess.run(["docker", "rm", "-f", *left], capture_output=True)
    images = subprocess.run(
        ["docker", "images", "-aq", "--filter", f"label={MARK}"], capture_output=True, text=True
    ).stdout.split()
    if images:
        subprocess.run(["docker", "rmi", "-f", *set(images)], capture_output=True)


def _containers(run_id: str) -> list[str]:
    return subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=datmo.run={run_id}"],
        capture_output=True,
        text=True,
    ).stdout.split()


@pytest.mark.docker
def test_docker_interactive_shell(
    dproject: Path, cli: Callable[..., Any], terminal: Callable[..., Terminal]
) -> None:
    assert cli("environment", "build").exit_code == 0
    term = terminal("run", "-i", "sh")
    term.wait_attached()
    term.type("echo hi-$((40+2))\r")
    term.expect(b"hi-42")
    term.type("exit 3\r")
    assert term.wait() == 3, term.seen
    doc = only_run(cli)
    assert doc["status"] == "FAILED"
    assert doc["exit_code"] == 3
    assert doc["executor"] == "docker"
    deadline = time.monotonic() + 10
    while _containers(doc["id"]) and time.monotonic() < deadline:
        time.sleep(0.1)  # removed by the supervisor, which may still be at it
    assert _containers(doc["id"]) == []


@pytest.mark.docker
def test_docker_interactive_prompt_shows_before_enter(
    dproject: Path, cli: Callable[..., Any], terminal: Callable[..., Terminal]
) -> None:
    """A prompt without a newline must reach the screen before the answer is typed."""
    assert cli("environment", "build").exit_code == 0
    term = terminal("run", "-i", 'sleep 1; printf "Name? "; read name; echo "hello $name"')
    term.wait_attached()
    term.expect(b"Name? ", timeout=2.5)
    term.type("datmo\r")
    term.expect(b"hello datmo")
    assert term.wait() == 0, term.seen
    assert only_run(cli)["status"] == "SUCCESS"
