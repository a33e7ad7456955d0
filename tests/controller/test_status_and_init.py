"""`datmo init`, `datmo status`, `datmo cleanup`, finding the project from a subfolder,
and a few smoke tests of the real command in a separate process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import datmo_subprocess

MiB = 1 << 20
REPO = Path(__file__).resolve().parents[2]


def project_record(root: Path) -> dict[str, Any]:
    return json.loads((root / ".datmo" / "project.json").read_text())


def status_json(cli: Any) -> dict[str, Any]:
    r = cli("status", "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert isinstance(doc, dict)
    return doc


def create(cli: Any, *args: str) -> str:
    r = cli("snapshot", "create", *args)
    assert r.exit_code == 0, r.output
    return r.stdout.strip()


# -- init --------------------------------------------------------------------------------------


def test_init_creates_the_store(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = cli("init", "--name", "mnist", "--description", "digits")
    assert r.exit_code == 0, r.output
    rec = project_record(tmp_path)
    assert rec["name"] == "mnist" and rec["description"] == "digits"
    assert (tmp_path / ".datmo" / "git").is_dir()
    assert rec["id"][:8] in r.stdout


def test_init_without_a_name_uses_the_folder_name(tmp_path, cli, monkeypatch):
    folder = tmp_path / "my-model"
    folder.mkdir()
    monkeypatch.chdir(folder)
    assert cli("init").exit_code == 0
    assert project_record(folder)["name"] == "my-model"


def test_init_again_keeps_the_id_and_updates_the_name(project, cli):
    before = project_record(project)
    r = cli("init", "--name", "renamed", "--description", "now described")
    assert r.exit_code == 0, r.output
    after = project_record(project)
    assert after["id"] == before["id"]
    assert after["name"] == "renamed" and after["description"] == "now described"
    assert cli("init").exit_code == 0
    assert project_record(project)["name"] == "renamed"  # no --name: the name stays


def test_init_refuses_the_home_folder_without_force(isolated_home, cli, monkeypatch):
    monkeypatch.chdir(isolated_home)
    r = cli("init")
    assert r.exit_code != 0
    assert "--force" in r.stderr
    assert not (isolated_home / ".datmo").exists()
    forced = cli("init", "--force")
    assert forced.exit_code == 0, forced.output
    assert (isolated_home / ".datmo" / "project.json").is_file()


def test_init_refuses_the_root_folder_without_force(cli, monkeypatch):
    existed = os.path.exists("/.datmo")
    monkeypatch.chdir("/")
    try:
        r = cli("init")
        assert r.exit_code != 0
        assert "--force" in r.stderr
        assert os.path.exists("/.datmo") == existed
    finally:
        if not existed and os.path.exists("/.datmo"):
            import shutil

            shutil.rmtree("/.datmo")


def test_init_in_a_git_repository_adds_datmo_to_gitignore_once(tmp_path, cli, monkeypatch):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("*.pyc")  # no final newline
    monkeypatch.chdir(tmp_path)
    r = cli("init")
    assert r.exit_code == 0, r.output
    assert ".gitignore" in r.output
    assert (tmp_path / ".gitignore").read_text().splitlines() == ["*.pyc", ".datmo/"]
    again = cli("init", "--name", "again")
    assert again.exit_code == 0, again.output
    assert ".gitignore" not in again.output
    assert (tmp_path / ".gitignore").read_text().splitlines() == ["*.pyc", ".datmo/"]
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", ".datmo/project.json"], cwd=tmp_path, check=False
    )
    assert ignored.returncode == 0


def test_init_outside_git_leaves_gitignore_alone(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli("init").exit_code == 0
    assert not (tmp_path / ".gitignore").exists()


def test_init_never_prompts_without_a_tty(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    for args in (("init",), ("init", "--name", "again"), ("cleanup",)):
        p = datmo_subprocess(*args, cwd=tmp_path, stdin=subprocess.DEVNULL, timeout=30)
        assert "Traceback" not in p.stderr
        assert "[y/N]" not in p.stdout + p.stderr
    assert (tmp_path / ".datmo").is_dir()  # cleanup without --yes refused


# -- any subfolder, or none ------------------------------------------------------------------


def test_commands_work_from_any_subfolder(project, cli, tree, monkeypatch):
    tree(project, {"a.py": "a\n", "src/deep/er/b.py": "b\n"})
    monkeypatch.chdir(project / "src" / "deep" / "er")
    sid = create(cli, "-m", "from below")
    assert (project / ".datmo" / "snapshots" / f"{sid}.json").is_file()
    assert not (project / "src" / ".datmo").exists()
    r = cli("snapshot", "ls", "--format", "json")
    assert r.exit_code == 0, r.output
    assert [s["id"] for s in json.loads(r.stdout)] == [sid]
    assert status_json(cli)["current_snapshot"] == sid
    (project / "a.py").write_text("changed\n")
    assert "a.py" in status_json(cli)["code"]["changed"]


@pytest.mark.parametrize(
    "args",
    [("status",), ("snapshot", "ls"), ("snapshot", "create", "-m", "x"), ("cleanup", "--yes")],
)
def test_outside_a_project_a_one_line_error_says_to_run_init(tmp_path, cli, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    r = cli(*args)
    assert r.exit_code == 1
    assert "datmo init" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert r.stdout == ""
    assert not (tmp_path / ".datmo").exists()


# -- status --------------------------------------------------------------------------------------


def test_status_before_the_first_snapshot(project, cli):
    r = cli("status")
    assert r.exit_code == 0, r.output
    assert "none" in r.stdout
    assert status_json(cli)["current_snapshot"] is None


def test_status_reports_clean_and_each_kind_of_change(project, cli, tree):
    tree(
        project,
        {
            "a.py": "a = 1\n",
            "model.bin": os.urandom(MiB + 1),
            "config.json": '{"lr": 0.1}',
            "stats.json": '{"acc": 0.5}',
        },
    )
    sid = create(cli, "-m", "base")
    doc = status_json(cli)
    assert doc["current_snapshot"] == sid
    assert doc["clean"] is True
    assert doc["config_changed"] is False and doc["metrics_changed"] is False
    text = cli("status")
    assert sid[:8] in text.stdout and "base" in text.stdout

    (project / "a.py").write_text("a = 2\n")
    tree(project, {"new.py": "n\n"})
    doc = status_json(cli)
    assert doc["clean"] is False
    assert doc["code"]["changed"] == ["a.py"] and doc["code"]["added"] == ["new.py"]
    assert not any(doc["files"].values())
    assert "a.py" in cli("status").stdout

    create(cli, "-m", "code saved")
    (project / "model.bin").write_bytes(os.urandom(MiB + 1))
    doc = status_json(cli)
    assert doc["clean"] is False
    assert doc["files"]["changed"] == ["model.bin"]
    assert not any(doc["code"].values())

    create(cli, "-m", "files saved")
    assert status_json(cli)["clean"] is True
    (project / "config.json").write_text('{"lr": 0.2}')
    doc = status_json(cli)
    assert doc["config_changed"] is True and doc["metrics_changed"] is False
    assert doc["clean"] is False
    (project / "stats.json").write_text('{"acc": 0.6}')
    assert status_json(cli)["metrics_changed"] is True
    assert "config" in cli("status").stdout


def test_status_sees_a_deleted_file(project, cli, tree):
    tree(project, {"a.py": "a\n", "b.py": "b\n"})
    create(cli, "-m", "base")
    (project / "b.py").unlink()
    doc = status_json(cli)
    assert doc["code"]["removed"] == ["b.py"]
    assert doc["clean"] is False


# -- cleanup -------------------------------------------------------------------------------------


def test_cleanup_yes_removes_the_store_and_nothing_else(project, cli, tree):
    tree(project, {"a.py": "a\n"})
    create(cli, "-m", "x")
    r = cli("cleanup", "--yes")
    assert r.exit_code == 0, r.output
    assert not (project / ".datmo").exists()
    assert (project / "a.py").read_text() == "a\n"
    assert "datmo init" in cli("status").stderr


def test_cleanup_from_a_subfolder(project, cli, tree, monkeypatch):
    tree(project, {"src/a.py": "a\n"})
    monkeypatch.chdir(project / "src")
    assert cli("cleanup", "--yes").exit_code == 0
    assert not (project / ".datmo").exists()
    assert (project / "src" / "a.py").is_file()


def test_cleanup_without_yes_and_no_tty_refuses(project, cli):
    r = cli("cleanup", input="y\n")
    assert r.exit_code != 0
    assert "--yes" in r.stderr
    assert (project / ".datmo" / "project.json").is_file()


# -- the real command ----------------------------------------------------------------------------


def test_smoke_init_create_ls_in_a_fresh_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    work = tmp_path / "fresh"
    (work / "src").mkdir(parents=True)
    (work / "src" / "train.py").write_text("import json\nprint('training')\n")
    (work / "weights.bin").write_bytes(os.urandom(MiB + 3))
    init = datmo_subprocess("init", "--name", "smoke", cwd=work, timeout=60)
    assert init.returncode == 0, init.stderr
    made = datmo_subprocess(
        "snapshot", "create", "-m", "first", "-c", "lr=0.01", cwd=work / "src", timeout=60
    )
    assert made.returncode == 0, made.stderr
    sid = made.stdout.strip()
    listed = datmo_subprocess("snapshot", "ls", "--format", "json", cwd=work, timeout=60)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["id"], r["message"], r["config"]) for r in rows] == [(sid, "first", {"lr": 0.01})]
    table = datmo_subprocess("snapshot", "ls", cwd=work, timeout=60)
    assert table.returncode == 0 and sid[:8] in table.stdout


def test_smoke_version_and_help():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for args in (["--help"], ["version"], ["snapshot", "--help"]):
        p = subprocess.run(
            [sys.executable, "-m", "datmo", *args], capture_output=True, text=True, env=env
        )
        assert p.returncode == 0, p.stderr
        assert "datmo" in p.stdout


def test_status_names_the_config_and_metric_keys_that_changed(project, cli, tree):
    tree(project, {"config.json": '{"lr": 0.1, "epochs": 5}', "stats.json": '{"acc": 0.5}'})
    assert cli("snapshot", "create", "-m", "a").exit_code == 0
    tree(
        project,
        {"config.json": '{"lr": 0.5, "epochs": 5, "seed": 1}', "stats.json": '{"acc": 0.7}'},
    )
    text = cli("status").stdout
    assert "config changed (config.json): lr 0.1 -> 0.5, seed (none) -> 1" in text
    assert "metrics changed (stats.json): acc 0.5 -> 0.7" in text
    doc = json.loads(cli("status", "--format", "json").stdout)
    assert doc["config_keys"] == {"lr": [0.1, 0.5], "seed": [None, 1]}
    assert doc["metric_keys"] == {"acc": [0.5, 0.7]}
