"""The click-free path for `datmo snapshot create -m MSG [-l LABEL]`.

It must take exactly the command lines it understands, hand every other one to
click, and say and exit exactly as the click command does.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from conftest import imported_modules, run_datmo

from datmo.cli import quick

TAKEN = {
    "-m x": {"message": "x"},
    "--message x": {"message": "x"},
    "--message='x y'": {"message": "x y"},
    "-m x -l best": {"message": "x", "label": "best"},
    "--label=best -m x": {"message": "x", "label": "best"},
    "-m a -m b": {"message": "b"},  # the last wins, as in click
    "-m ''": {"message": ""},  # the controller refuses it, in both paths alike
}
LEFT_TO_CLICK = [
    "",
    "-l best",  # no message
    "-m",  # no value
    "-m -x",  # a value that looks like an option
    "--message=-x",
    "-m x -c lr=1",
    "-m x --help",
    "-m x extra",
    "-mx",  # attached short values: click's to parse
    "-m x --",
]


@pytest.mark.parametrize(("line", "expected"), TAKEN.items(), ids=TAKEN.keys())
def test_the_command_lines_it_takes(line: str, expected: dict[str, str]) -> None:
    assert quick.parse_create(["snapshot", "create", *shlex.split(line)]) == expected


@pytest.mark.parametrize("line", LEFT_TO_CLICK)
def test_everything_else_goes_to_click(line: str) -> None:
    assert quick.parse_create(["snapshot", "create", *shlex.split(line)]) is None


@pytest.mark.parametrize(
    "args",
    [["snapshot", "ls"], ["--debug", "snapshot", "create", "-m", "x"], ["create", "-m", "x"]],
)
def test_other_commands_go_to_click(args: list[str]) -> None:
    assert quick.parse_create(args) is None


def _quick(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int | None, str, str]:
    code = quick.run(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def _same_as_click(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code, out, err = _quick(args, capsys)
    assert code is not None, "the quick path declined"
    clicked = run_datmo(*args)
    assert (code, out, err) == (clicked.exit_code, clicked.stdout, clicked.stderr)
    return code, out, err


def test_unchanged_project_says_the_same_as_click(
    project: Path, tree: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    tree(project, {"train.py": "print(1)\n", ".env": "SECRET=1\n", "\x1b[31mred.py": "r\n"})
    first = run_datmo("snapshot", "create", "-m", "base", "-l", "best")
    assert first.exit_code == 0, first.output
    code, out, err = _same_as_click(["snapshot", "create", "-m", "base", "-l", "best"], capsys)
    assert code == 0 and out == first.stdout
    assert "nothing changed" in err
    assert "\x1b" not in err and "\\x1b[31mred.py" not in err  # only left-out names listed
    assert ".env (may hold secrets)" in err


def test_a_new_snapshot_through_the_quick_path(
    project: Path, tree: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    tree(project, {"train.py": "print(1)\n"})
    code, out, err = _quick(["snapshot", "create", "-m", "first"], capsys)
    assert code == 0 and err == ""
    listed = run_datmo("snapshot", "ls", "--format", "json")
    assert out.strip() in listed.stdout and '"message": "first"' in listed.stdout


def test_left_out_names_are_escaped(
    project: Path, tree: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    tree(project, {"a.py": "a\n", "\x1b[2Jwipe.pem": "x\n"})
    assert run_datmo("snapshot", "create", "-m", "x").exit_code == 0
    _, _, err = _same_as_click(["snapshot", "create", "-m", "x"], capsys)
    assert "\\x1b[2Jwipe.pem (may hold secrets)" in err and "\x1b" not in err


@pytest.mark.parametrize("message", ["", "   "])
def test_refused_messages_fail_alike(
    project: Path, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _same_as_click(["snapshot", "create", "-m", message], capsys)
    assert code != 0 and out == "" and err.startswith("datmo: error:")


def test_outside_a_project_fails_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = _same_as_click(["snapshot", "create", "-m", "x"], capsys)
    assert code == 1 and "datmo init" in err


def test_a_damaged_record_fails_alike(
    project: Path, tree: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    tree(project, {"a.py": "a\n"})
    assert run_datmo("snapshot", "create", "-m", "x").exit_code == 0
    (project / ".datmo" / "project.json").write_text("{not json")
    code, _, err = _same_as_click(["snapshot", "create", "-m", "x"], capsys)
    assert code != 0 and err.count("\n") == 1


def test_debug_in_the_environment_goes_to_click(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATMO_DEBUG", "1")
    assert quick.run(["snapshot", "create", "-m", "x"]) is None


def test_the_quick_path_does_not_load_click(project: Path, tree: Any) -> None:
    tree(project, {"a.py": "a\n"})
    quick_names = imported_modules(["snapshot", "create", "-m", "x"], project)
    assert "datmo.core.controller.snapshot" in quick_names  # it really ran
    assert "click" not in quick_names
    # The same command with an option it leaves to click: the check above can fail.
    assert "click" in imported_modules(["snapshot", "create", "-m", "x", "-c", "a=1"], project)
