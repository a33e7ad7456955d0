"""Push, pull and clone through a folder remote, as a user types them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from datmo.core.controller import fsck
from datmo.core.storage.project import ProjectContext
from datmo.core.storage.store import Store


def fsck_clean(root: Path) -> None:
    report = fsck.check(ProjectContext(root, Store(root)))
    assert report.problems == [], report.problems


def ls(cli, *args):
    result = cli("ls", "--format", "json", *args)
    assert result.exit_code == 0, result.output
    return {r["id"]: r for r in json.loads(result.stdout)}


def test_push_clone_and_rerun_verify_from_a_folder_remote(
    cli, project, finished_run, tmp_path, monkeypatch
):
    rid = finished_run()
    remote = tmp_path / "remote"
    assert cli("remote", "add", "origin", str(remote)).exit_code == 0
    pushed = cli("push")
    assert pushed.exit_code == 0, pushed.output
    assert "pushed 1 run(s), 2 snapshot(s)" in pushed.stdout
    assert (remote / "records" / "runs" / f"{rid}.json").is_file()
    # again: nothing new is a success, not an error
    again = cli("push")
    assert again.exit_code == 0 and "nothing to push" in again.stdout
    checked = cli("fsck", "--remote", "origin")
    assert checked.exit_code == 0, checked.output

    monkeypatch.chdir(tmp_path)
    cloned = cli("clone", str(remote), "copy")
    assert cloned.exit_code == 0, cloned.output
    monkeypatch.chdir(tmp_path / "copy")
    runs = ls(cli)
    assert runs[rid]["origin"] == "origin" and runs[rid]["metrics"] == {"acc": 0.9}
    same_id = json.loads((project / ".datmo" / "project.json").read_text())["id"]
    assert json.loads((tmp_path / "copy/.datmo/project.json").read_text())["id"] == same_id
    assert "from" in cli("ls").stdout  # the table names where runs came from
    fsck_clean(tmp_path / "copy")
    verified = cli("rerun", rid[:8], "--verify")
    assert verified.exit_code == 0, verified.output
    assert "reproduced" in verified.stderr
    logs = cli("logs", rid[:8])
    assert "acc: 0.9" in logs.stdout


def test_pull_brings_only_what_is_new_and_never_overwrites(
    cli, project, finished_run, tmp_path, monkeypatch
):
    first = finished_run("0.5")
    remote = tmp_path / "remote"
    cli("remote", "add", "origin", str(remote))
    assert cli("push").exit_code == 0
    monkeypatch.chdir(tmp_path)
    assert cli("clone", str(remote), "b").exit_code == 0
    monkeypatch.chdir(tmp_path / "b")
    (tmp_path / "b" / "train.py").write_text("print('acc: 0.7')\n")
    made = cli("run", "--executor", "local", "python train.py")
    assert made.exit_code == 0, made.output
    second = next(i for i in ls(cli) if i != first)
    assert cli("push").exit_code == 0
    monkeypatch.chdir(project)
    pulled = cli("pull")
    assert pulled.exit_code == 0, pulled.output
    assert "pulled 1 run(s)" in pulled.stdout
    runs = ls(cli)
    assert runs[second]["origin"] == "origin" and runs[first]["origin"] is None
    assert cli("pull").stdout.startswith("nothing to pull")
    fsck_clean(project)


def test_pull_no_files_fetches_a_snapshots_files_on_checkout(
    cli, project, finished_run, tmp_path, monkeypatch
):
    rid = finished_run()
    remote = tmp_path / "remote"
    cli("remote", "add", "origin", str(remote))
    cli("push")
    monkeypatch.chdir(tmp_path)
    assert cli("clone", "--no-files", str(remote), "lazy").exit_code == 0
    lazy = tmp_path / "lazy"
    monkeypatch.chdir(lazy)
    objects = lazy / ".datmo" / "objects"
    big = [p for p in objects.rglob("*") if p.is_file() and p.stat().st_size >= 1_000_000]
    assert big == []  # the data and the model stayed on the remote
    fsck_clean(lazy)  # pending files are not a problem
    after = ls(cli)[rid]["after_snapshot_id"]
    done = cli("snapshot", "checkout", after[:8])
    assert done.exit_code == 0, done.output
    assert (lazy / "model.bin").stat().st_size == 1_500_000
    assert (lazy / "data.bin").read_bytes() == b"d" * 1_200_000
    fsck_clean(lazy)
    # a rerun of a run whose before snapshot is still pending fetches it too
    assert cli("rerun", rid[:8]).exit_code == 0


def test_only_finished_runs_are_pushed(cli, project, finished_run, tmp_path):
    done = finished_run()
    queued = cli("run", "--queue", "--executor", "local", "echo later")
    assert queued.exit_code == 0, queued.output
    qid = queued.stdout.strip()
    cli("remote", "add", "origin", str(tmp_path / "remote"))
    pushed = cli("push")
    assert pushed.exit_code == 0
    assert f"not pushed: run {qid[:8]} is QUEUED" in pushed.stderr
    assert not (tmp_path / "remote/records/runs" / f"{qid}.json").exists()
    assert (tmp_path / "remote/records/runs" / f"{done}.json").exists()
    named = cli("push", qid[:8])
    assert named.exit_code == 1 and "QUEUED" in named.stderr and "\n" not in named.stderr.strip()


def test_push_named_ids_sends_only_those_and_what_they_need(cli, project, finished_run, tmp_path):
    a = finished_run("0.1")
    b = finished_run("0.2")
    remote = tmp_path / "remote"
    cli("remote", "add", "origin", str(remote))
    assert cli("push", "origin", a[:8]).exit_code == 0
    runs = {p.stem for p in (remote / "records/runs").iterdir()}
    assert runs == {a}
    assert cli("push", b[:8]).exit_code == 0  # the default remote
    assert {p.stem for p in (remote / "records/runs").iterdir()} == {a, b}
    assert cli("push", "--all", a[:8]).exit_code == 2


def test_a_remote_holds_one_project(cli, project, finished_run, tmp_path, monkeypatch):
    finished_run()
    remote = tmp_path / "remote"
    cli("remote", "add", "origin", str(remote))
    assert cli("push").exit_code == 0
    before = sorted(str(p) for p in remote.rglob("*"))
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    cli("init", "--name", "other")
    cli("snapshot", "create", "-m", "x")
    cli("remote", "add", "origin", str(remote))
    refused = cli("push")
    assert refused.exit_code == 1
    assert "holds the project 'test'" in refused.stderr
    assert sorted(str(p) for p in remote.rglob("*")) == before
    assert cli("pull").exit_code == 1


def test_a_folder_that_is_not_a_remote_is_not_written(cli, project, finished_run, tmp_path):
    finished_run()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    cli("remote", "add", "origin", str(busy))
    refused = cli("push")
    assert refused.exit_code == 1 and "not empty" in refused.stderr
    assert os.listdir(busy) == ["notes.txt"]


def test_remotes_survive_fsck_repair_of_a_damaged_project_record(cli, project, tmp_path):
    assert cli("remote", "add", "origin", str(tmp_path / "r")).exit_code == 0
    assert cli("remote", "add", "lab", "ssh://me@host:2222/srv/p", "--default").exit_code == 0
    (project / ".datmo" / "project.json").write_text("{damaged")
    assert cli("fsck", "--repair").exit_code == 0
    listed = json.loads(cli("remote", "ls", "--format", "json").stdout)
    assert {r["name"]: r["default"] for r in listed} == {"lab": True, "origin": False}
    assert cli("remote", "rm", "lab").exit_code == 0
    listed = json.loads(cli("remote", "ls", "--format", "json").stdout)
    assert [r["name"] for r in listed] == ["origin"] and listed[0]["default"]  # the only one


def test_a_damaged_object_on_the_remote_is_found_and_never_pulled(
    cli, project, finished_run, tmp_path, monkeypatch
):
    finished_run()
    remote = tmp_path / "remote"
    cli("remote", "add", "origin", str(remote))
    cli("push")
    victim = max(
        (p for p in (remote / "objects").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
    )
    os.chmod(victim, 0o644)
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    checked = cli("fsck", "--remote", "origin")
    assert checked.exit_code == 1 and "does not match its hash" in checked.stdout
    monkeypatch.chdir(tmp_path)
    cloned = cli("clone", str(remote), "c")
    assert cloned.exit_code != 0 and "hash" in cloned.stderr
    assert not (tmp_path / "c").exists()  # a failed clone leaves nothing behind


def test_a_sweeps_runs_travel_with_their_sweep(cli, project, tree, tmp_path, monkeypatch):
    tree(project, {"train.py": "import datmo\nprint(f\"acc: {datmo.config()['lr']}\")\n"})
    swept = cli(
        "sweep", "--executor", "local", "python train.py", "-c", "lr=0.1,0.2", "--parallel", "2"
    )
    assert swept.exit_code == 0, swept.output
    sweep_id = swept.stdout.strip().splitlines()[0]
    remote = tmp_path / "remote"
    cli("remote", "add", "origin", str(remote))
    assert cli("push").exit_code == 0
    assert (remote / "records" / "sweeps" / f"{sweep_id}.json").is_file()
    monkeypatch.chdir(tmp_path)
    assert cli("clone", str(remote), "c").exit_code == 0
    monkeypatch.chdir(tmp_path / "c")
    shown = cli("sweep", "show", sweep_id[:8])
    assert shown.exit_code == 0, shown.output
    assert len(ls(cli, "--sweep", sweep_id[:8])) == 2
    fsck_clean(tmp_path / "c")


def test_a_pull_with_files_completes_an_earlier_pull_without(
    cli, project, finished_run, tmp_path, monkeypatch
):
    finished_run()
    remote = tmp_path / "remote"
    cli("remote", "add", "origin", str(remote))
    cli("push")
    monkeypatch.chdir(tmp_path)
    assert cli("clone", "--no-files", str(remote), "lazy").exit_code == 0
    monkeypatch.chdir(tmp_path / "lazy")
    pulled = cli("pull")
    assert pulled.exit_code == 0 and "fetched 2 stored file(s)" in pulled.stdout, pulled.output
    assert "nothing to pull" in cli("pull").stdout
    pending = [
        json.loads(p.read_text())["files_pending"]
        for p in (tmp_path / "lazy/.datmo/snapshots").iterdir()
    ]
    assert pending and not any(pending)
    big = [
        p
        for p in (tmp_path / "lazy/.datmo/objects").rglob("*")
        if p.is_file() and p.stat().st_size >= 1_000_000
    ]
    assert len(big) == 2  # data.bin and model.bin
    fsck_clean(tmp_path / "lazy")


def _half_made_git(remote: Path) -> None:
    """What a push killed inside `git init` can leave: git/ with HEAD and nothing else."""
    (remote / "git").mkdir(parents=True)
    (remote / "git" / "HEAD").write_text("ref: refs/heads/master\n")


def test_a_push_after_one_killed_inside_git_init_finishes(cli, project, finished_run, tmp_path):
    rid = finished_run()
    remote = tmp_path / "remote"
    _half_made_git(remote)
    assert cli("remote", "add", "origin", str(remote)).exit_code == 0
    pushed = cli("push")
    assert pushed.exit_code == 0, pushed.output
    assert (remote / "records" / "runs" / f"{rid}.json").is_file()
    checked = cli("fsck", "--remote", "origin")
    assert checked.exit_code == 0, checked.output
    assert os.listdir(remote / "tmp") == []  # the repository was made aside, then moved
