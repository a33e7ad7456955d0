"""Fast start-up: common commands must not import heavy or unneeded modules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = {"docker", "git", "yaml", "requests", "tabulate", "blake3"}  # git: GitPython


def imported(args: list[str], cwd: Path) -> set[str]:
    """Modules `python -X importtime -m datmo ARGS` imports (full dotted names)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "datmo", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    names = set()
    for line in p.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":  # the header line
                names.add(name)
    assert "datmo" in names and "click" in names  # the parse found real imports
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
