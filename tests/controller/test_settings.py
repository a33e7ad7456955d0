"""`datmo settings`: per-project behaviour, kept in project.json, never in a config."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import runs


def test_capture_can_be_turned_off_for_the_project(project: Path, cli: Callable[..., Any]) -> None:
    assert cli("settings", "get", "run.capture").stdout.strip() == "true"
    done = cli("settings", "set", "run.capture", "false")
    assert done.exit_code == 0 and done.stdout.strip() == "run.capture = false"
    assert json.loads((project / ".datmo" / "project.json").read_text())["settings"] == {
        "run.capture": False
    }
    assert cli("run", "--executor", "local", "echo 'acc: 0.5'").exit_code == 0
    (doc,) = runs(cli)
    assert doc["metrics"] == {} and doc["options"]["capture"] is False
    assert doc["config"] == {}  # settings are never a run's config
    listed = cli("settings", "ls", "--format", "json")
    assert json.loads(listed.stdout)[0] == {
        "name": "run.capture",
        "value": False,
        "set": True,
        "help": "read 'key: number' output lines as metrics",
    }
    assert cli("settings", "unset", "run.capture").exit_code == 0
    assert cli("settings", "get", "run.capture").stdout.strip() == "true"


def test_bad_settings_are_refused(project: Path, cli: Callable[..., Any]) -> None:
    for args, says in [
        (("set", "run.captur", "false"), "no setting 'run.captur'"),
        (("set", "run.capture", "maybe"), "run.capture is true or false, not 'maybe'"),
        (("get", "lr"), "no setting 'lr'"),
    ]:
        result = cli("settings", *args)
        assert result.exit_code == 2, result.output
        assert says in result.stderr and result.stderr.count("\n") == 1
