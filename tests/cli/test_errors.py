"""Bad input: a non-zero exit, one line on stderr, no traceback, and the store unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VOLATILE = {"cache", "lock"}  # safe to change on any command (docs/storage.md)


def store_digest(root: Path) -> str:
    """Every name and byte under .datmo, except the cache and the lock."""
    base = root / ".datmo"
    h = hashlib.sha256()
    for top, dirs, files in os.walk(base):
        if Path(top) == base:
            dirs[:] = [d for d in dirs if d not in VOLATILE]
            files = [f for f in files if f not in VOLATILE]
        dirs.sort()
        for name in sorted(files):
            full = Path(top, name)
            h.update(str(full.relative_to(base)).encode() + b"\0")
            h.update(os.readlink(full).encode() if full.is_symlink() else full.read_bytes())
        for name in dirs:
            h.update(str(Path(top, name).relative_to(base)).encode() + b"/\0")
    return h.hexdigest()


@pytest.fixture
def snap(project, cli, tree) -> str:
    tree(
        project,
        {
            "a.py": "a = 1\n",
            "list.json": "[1, 2, 3]",
            "bad.yaml": "lr: [0.1, 0.2\nname: x\n",
            "good.yaml": "lr: 0.1\n",
        },
    )
    r = cli("snapshot", "create", "-m", "base")
    assert r.exit_code == 0, r.output
    return r.stdout.strip()


CASES = {
    "unknown id": (("snapshot", "inspect", "ffff0000ffff"), "ffff0000ffff"),
    "unknown id, checkout": (("snapshot", "checkout", "ffff0000"), "ffff0000"),
    "unknown id, delete": (("snapshot", "delete", "ffff0000"), "ffff0000"),
    "short prefix": (("snapshot", "inspect", "{sid3}"), "{sid3}"),
    "short prefix, diff": (("snapshot", "diff", "{sid3}", "{sid}"), "{sid3}"),
    "malformed -c": (("snapshot", "create", "-m", "x", "-c", "lr"), "lr"),
    "malformed -s on update": (("snapshot", "update", "{sid}", "-s", "acc"), "acc"),
    "missing --config-file": (
        ("snapshot", "create", "-m", "x", "--config-file", "nope.yaml"),
        "nope.yaml",
    ),
    "config file holding a list": (
        ("snapshot", "create", "-m", "x", "--config-file", "list.json"),
        "list.json",
    ),
    "invalid YAML": (("snapshot", "create", "-m", "x", "--stats-file", "bad.yaml"), "bad.yaml"),
    "empty message": (("snapshot", "create", "-m", ""), "message"),
    "blank message": (("snapshot", "create", "-m", "   "), "message"),
    "blank message on update": (("snapshot", "update", "{sid}", "-m", " "), "message"),
    "--paths to a missing file": (
        ("snapshot", "create", "-m", "x", "--paths", "missing.csv"),
        "missing.csv",
    ),
    "--paths escaping with ..": (("snapshot", "create", "-m", "x", "--paths", "a.py>../x"), ".."),
    "--paths to an absolute dest": (
        ("snapshot", "create", "-m", "x", "--paths", "a.py>/etc/x"),
        "/etc/x",
    ),
    "checkout --to inside the project": (
        ("snapshot", "checkout", "{sid}", "--to", "restored"),
        "inside the project",
    ),
    "checkout PATHS without --to": (("snapshot", "checkout", "{sid}", "a.py"), "--to"),
    "checkout --to a path not in the snapshot": (
        ("snapshot", "checkout", "{sid}", "--to", "{outside}", "nothere.py"),
        "nothere.py",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_changes_nothing(name, project, cli, snap, tmp_path):
    args, needle = CASES[name]
    fill = {"sid": snap, "sid3": snap[:3], "outside": str(tmp_path / "out")}
    args = tuple(a.format(**fill) for a in args)
    needle = needle.format(**fill)
    before = store_digest(project)
    files_before = sorted(os.listdir(project))
    r = cli(*args)
    assert r.exit_code != 0, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.output
    assert needle in r.stderr, r.stderr
    assert r.stdout == ""
    assert store_digest(project) == before
    assert sorted(os.listdir(project)) == files_before
    assert not (tmp_path / "out").exists()


def test_a_yaml_value_with_no_json_type_is_stored_or_refused_cleanly(project, cli, snap):
    # YAML has dates, sets and binary; records are JSON. Either keep the value as text,
    # or refuse in one line before anything is stored; never an internal error.
    (project / "dated.yaml").write_text("start: 2024-01-31\nlr: 0.1\n")
    before = store_digest(project)
    r = cli("snapshot", "create", "-m", "dated", "--config-file", "dated.yaml")
    assert "Traceback" not in r.output
    assert "unexpected" not in r.stderr, r.stderr
    if r.exit_code == 0:
        doc = json.loads(
            (project / ".datmo" / "snapshots" / f"{r.stdout.strip()}.json").read_text()
        )
        assert doc["config"] == {"start": "2024-01-31", "lr": 0.1}
    else:
        assert len(r.stderr.strip().splitlines()) == 1
        assert "start" in r.stderr or "dated.yaml" in r.stderr
        assert store_digest(project) == before


def test_a_corrupt_record_names_its_file(project, cli, snap):
    path = project / ".datmo" / "snapshots" / f"{snap}.json"
    path.write_text('{"id": "' + snap + '", "message": "trunc')
    before = store_digest(project)
    for args in (("snapshot", "ls"), ("snapshot", "inspect", snap[:6]), ("status",)):
        r = cli(*args)
        assert r.exit_code != 0, (args, r.output)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "Traceback" not in r.output
        assert f"snapshots/{snap}.json" in r.stderr, r.stderr
        assert store_digest(project) == before


def test_a_record_of_the_wrong_shape_is_a_clear_error(project, cli, snap):
    path = project / ".datmo" / "snapshots" / f"{snap}.json"
    path.write_text(json.dumps(["not", "a", "record"]))
    r = cli("snapshot", "ls")
    assert r.exit_code != 0
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert snap in r.stderr
    assert "unexpected" not in r.stderr  # a damaged store is not an internal error


def test_outside_a_project(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args in (("snapshot", "ls"), ("snapshot", "create", "-m", "x"), ("status",)):
        r = cli(*args)
        assert r.exit_code != 0
        assert len(r.stderr.strip().splitlines()) == 1
        assert "datmo init" in r.stderr
    assert os.listdir(tmp_path) == []


# -- internal errors: one line normally, the traceback with --debug ---------------------------

BOOM = """
import sys
from datmo.core.controller import snapshot
def boom(*a, **k):
    raise RuntimeError("kaboom")
snapshot.ls = boom
from datmo.cli.main import main
main(sys.argv[1:])
"""


def _run_boom(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", BOOM, *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_an_internal_error_is_one_line_without_debug(project, snap):
    p = _run_boom(project, "snapshot", "ls")
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "kaboom" in p.stderr and "--debug" in p.stderr


def test_debug_shows_the_traceback_of_an_internal_error(project, snap):
    p = _run_boom(project, "--debug", "snapshot", "ls")
    assert p.returncode != 0
    assert "Traceback" in p.stderr
    assert "RuntimeError: kaboom" in p.stderr
