"""References never dangle: what a run needs is never deleted, and what only a deleted
run held is freed by gc; a damaged project record is rebuilt without losing anything."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import runs

LOCAL = ("--executor", "local")
BIG = "open('model.bin', 'wb').write(bytes(range(256)) * 8192)"  # 2 MiB: the object store


def ok(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return result


def snapshot_ids(cli: Callable[..., Any], *args: str) -> set[str]:
    return {
        s["id"] for s in json.loads(ok(cli("snapshot", "ls", "--format", "json", *args)).stdout)
    }


def current(project: Path) -> str:
    doc = json.loads((project / ".datmo" / "current.json").read_text())
    return str(doc["id"])


def objects(project: Path) -> int:
    return sum(1 for p in (project / ".datmo" / "objects").rglob("*") if p.is_file())


def test_a_snapshot_a_run_uses_is_hidden_and_kept(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    tree(project, {"train.py": BIG + "\nprint('acc: 0.5')\n", "data.txt": "v1\n"})
    base = ok(cli("snapshot", "create", "-m", "base")).stdout.strip()
    ok(cli("run", *LOCAL, "python3 train.py"))
    (run,) = runs(cli)
    assert run["before_snapshot_id"] == base  # the unchanged project's current snapshot
    done = ok(cli("snapshot", "delete", base, "--force"))
    assert f"its data stays while run {run['id'][:8]} uses it" in done.stdout
    assert base not in snapshot_ids(cli) and base in snapshot_ids(cli, "--all")
    assert ok(cli("fsck")).stdout.startswith("ok:")
    again = ok(cli("rerun", run["id"][:8], "--verify"))
    assert "reproduced" in again.stderr
    # Once no run uses it, gc frees it and what only it held.
    for r in runs(cli):
        ok(cli("delete", r["id"]))
    before = objects(project)
    freed = ok(cli("gc", "--grace", "0"))
    # Only the current snapshot stays: the run's after snapshot, what the tree holds now.
    assert snapshot_ids(cli, "--all") == {current(project)} and base != current(project)
    assert objects(project) < before and "2 snapshot(s)" in freed.stdout
    assert ok(cli("fsck")).stdout.startswith("ok:")


def test_deleting_a_run_lets_gc_free_what_only_it_held(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    tree(project, {"train.py": BIG})
    ok(cli("run", *LOCAL, "python3 train.py"))
    (run,) = runs(cli)
    held = objects(project)
    ok(cli("delete", run["id"]))
    young = ok(cli("gc"))
    # Nothing is old enough yet: gc says what the grace period kept, and how to free it.
    assert "freed 0 B" in young.stdout
    assert "younger than the grace period of 1h; 'datmo gc --grace 0' frees them" in young.stderr
    assert objects(project) == held
    freed = ok(cli("gc", "--grace", "0"))
    # The before snapshot goes; the after snapshot is current (the tree as the run left it).
    assert snapshot_ids(cli, "--all") == {run["after_snapshot_id"]} == {current(project)}
    assert "1 snapshot(s)" in freed.stdout
    ok(cli("snapshot", "create", "-m", "moved on", "-c", "x=1"))  # a new current snapshot
    ok(cli("gc", "--grace", "0"))
    assert run["after_snapshot_id"] not in snapshot_ids(cli, "--all")
    assert objects(project) < held


def test_unsaved_work_kept_by_checkout_is_never_freed(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    tree(project, {"a.txt": "one\n"})
    first = ok(cli("snapshot", "create", "-m", "one")).stdout.strip()
    (project / "a.txt").write_text("two, not saved\n")
    ok(cli("snapshot", "checkout", first, "--force"))
    saved = snapshot_ids(cli, "--all") - {first}
    assert len(saved) == 1
    ok(cli("gc", "--grace", "0"))
    assert snapshot_ids(cli, "--all") == {first, *saved}


def test_gc_grace_is_a_duration(project: Path, cli: Callable[..., Any]) -> None:
    for good in ("0", "90s", "30m", "2h", "1d", "1.5h"):
        assert cli("gc", "--dry-run", "--grace", good).exit_code == 0
    for bad in ("soon", "-1h", "1w"):
        result = cli("gc", "--grace", bad)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output


def test_a_damaged_project_record_is_rebuilt_from_its_backup(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    tree(project, {"a.txt": "x\n"})
    snap = ok(cli("snapshot", "create", "-m", "keep me")).stdout.strip()
    ok(cli("settings", "set", "run.capture", "false"))
    record = project / ".datmo" / "project.json"
    before = json.loads(record.read_text())
    record.write_text("{not json")
    broken = cli("status")
    assert broken.exit_code == 3 and "datmo fsck --repair" in broken.stderr
    found = cli("fsck")
    assert found.exit_code == 1 and "project.json" in found.stdout
    fixed = ok(cli("fsck", "--repair"))
    assert "rebuilt project.json from its backup" in fixed.stderr
    after = json.loads(record.read_text())
    assert (after["id"], after["settings"]) == (before["id"], {"run.capture": False})
    assert snap in snapshot_ids(cli)


def test_init_force_rebuilds_a_damaged_record_too(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    tree(project, {"a.txt": "x\n"})
    snap = ok(cli("snapshot", "create", "-m", "keep me")).stdout.strip()
    record = project / ".datmo" / "project.json"
    project_id = json.loads(record.read_text())["id"]
    record.write_text("\0\0\0")
    refused = cli("init")
    assert refused.exit_code == 1 and "'datmo init --force'" in refused.stderr
    ok(cli("init", "--force"))
    assert json.loads(record.read_text())["id"] == project_id
    record.unlink()  # lost altogether: init finds the project again from its backup
    assert "Updated" in ok(cli("init")).stdout
    assert json.loads(record.read_text())["id"] == project_id
    assert snap in snapshot_ids(cli)


def test_without_a_backup_fsck_makes_a_new_record_and_says_so(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    tree(project, {"a.txt": "x\n"})
    snap = ok(cli("snapshot", "create", "-m", "keep me")).stdout.strip()
    (project / ".datmo" / "project.backup.json").unlink()
    (project / ".datmo" / "project.json").write_text("[]")
    fixed = ok(cli("fsck", "--repair"))
    assert "the project has a new id" in fixed.stderr
    assert snap in snapshot_ids(cli)


@pytest.mark.docker
def test_a_run_of_a_deleted_environment_can_still_be_rerun(
    docker_project: Path, cli: Callable[..., Any], busybox_image: str
) -> None:
    (docker_project / "env").mkdir()
    (docker_project / "env" / "Dockerfile").write_text(f"FROM {busybox_image}\n")
    env_id = ok(cli("environment", "create", "--paths", "env/Dockerfile")).stdout.strip()
    ok(cli("environment", "set", env_id))
    ok(cli("run", "echo 'acc: 1'"))
    (run,) = runs(cli)
    (docker_project / "env" / "Dockerfile").write_text(f"FROM {busybox_image}\nENV X=1\n")
    other = ok(cli("environment", "create", "--paths", "env/Dockerfile")).stdout.strip()
    ok(cli("environment", "set", other))
    refused = cli("environment", "delete", env_id)
    assert refused.exit_code == 1 and f"run {run['id'][:8]}" in refused.stderr
    kept = ok(cli("environment", "delete", env_id, "--force"))
    assert "its definition is kept for" in kept.stdout
    listed = json.loads(ok(cli("environment", "ls", "--format", "json")).stdout)
    assert [e["id"] for e in listed] == [other]
    again = ok(cli("rerun", run["id"][:8], "--verify"))  # the image is built again
    assert "reproduced" in again.stderr
    assert ok(cli("fsck")).stdout.startswith("ok:")
