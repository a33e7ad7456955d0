"""Fast start-up: common commands must not import heavy or unneeded modules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import imported_modules

HEAVY = {"docker", "git", "yaml", "requests", "tabulate", "blake3", "werkzeug", "matplotlib"}


def imported(args: list[str], cwd: Path) -> set[str]:
    names = imported_modules(args, cwd)
    assert "click" in names  # every command here goes through click
    return names


def heavy(names: set[str]) -> set[str]:
    return {n for n in names if n.split(".")[0] in HEAVY}


@pytest.mark.parametrize("args", [["--help"], ["version"], ["snapshot", "--help"]])
def test_help_and_version_import_nothing_heavy(args, tmp_path):
    assert heavy(imported(args, tmp_path)) == set()


def test_ls_json_imports_nothing_heavy(project, cli, tree):
    tree(project, {"a.py": "import yaml\n", "w.bin": os.urandom((1 << 20) + 1)})
    made = cli("snapshot", "create", "-m", "x", "-c", "lr=0.1")
    assert made.exit_code == 0, made.output
    names = imported(["snapshot", "ls", "--format", "json"], project)
    assert heavy(names) == set()
    assert "datmo.core.controller.snapshot" in names  # it really listed


def test_the_parser_sees_heavy_imports_when_they_happen(project, cli, tree):
    # The table format needs tabulate: proves the check above can fail.
    tree(project, {"a.py": "a\n"})
    assert cli("snapshot", "create", "-m", "x").exit_code == 0
    assert "tabulate" in heavy(imported(["snapshot", "ls"], project))
