"""`datmo rerun`: the same command, options, before snapshot and image, in a scratch copy
that is removed afterwards; the working tree is never touched. `--verify` compares."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_doc, runs

REPO = Path(__file__).resolve().parents[2]
LOCAL = ("--executor", "local")
MARK = "datmo.test=test_rerun"


def only_run(cli: Callable[..., Any]) -> dict[str, Any]:
    (doc,) = runs(cli)
    return doc


def rerun_of(cli: Callable[..., Any], original: str) -> dict[str, Any]:
    (doc,) = [r for r in runs(cli) if r["id"] != original]
    return doc


def scratch_folders(project: Path) -> list[Path]:
    return list((project / ".datmo" / "work").iterdir())


def scratch_removed(project: Path, timeout: float = 10.0) -> bool:
    """The supervisor removes the scratch copy; it may still be at it as the record ends."""
    deadline = time.monotonic() + timeout
    while scratch_folders(project) and time.monotonic() < deadline:
        time.sleep(0.1)
    return scratch_folders(project) == []


def checkout_file(cli: Callable[..., Any], snap: str, name: str, to: Path) -> str:
    result = cli("snapshot", "checkout", snap, "--to", str(to), name)
    assert result.exit_code == 0, result.output
    return (to / name).read_text()


def verify_rows(result: Any) -> dict[tuple[str, str], bool]:
    rows = json.loads(result.stdout)["rows"]
    return {(r["kind"], r["name"]): r["same"] for r in rows}


def test_rerun_starts_from_the_before_snapshot(
    project: Path, cli: Callable[..., Any], tree: Any, tmp_path: Path
) -> None:
    tree(project, {"data.txt": "v1\n"})
    first = cli(
        "run", *LOCAL, "-c", "lr=0.5", "pwd; cat data.txt; cat data.txt > out.txt; echo 'n: 5'"
    )
    assert first.exit_code == 0, first.output
    orig = only_run(cli)

    (project / "data.txt").write_text("v2\n")  # work in progress the rerun must not see
    (project / "out.txt").unlink()
    again = cli("rerun", orig["id"][:8])
    assert again.exit_code == 0, again.output
    assert "v1" in again.stdout
    assert "v2" not in again.stdout
    assert f"{project}/.datmo/work/" in again.stdout  # a working copy under .datmo

    assert (project / "data.txt").read_text() == "v2\n"
    assert not (project / "out.txt").exists()
    assert scratch_removed(project)

    new = rerun_of(cli, orig["id"])
    assert new["status"] == "SUCCESS"
    assert new["command"] == orig["command"]
    assert new["before_snapshot_id"] == orig["before_snapshot_id"]
    assert new["environment_id"] == orig["environment_id"]
    assert new["config"] == orig["config"] == {"lr": 0.5}
    assert new["metrics"] == {"n": 5}
    record = json.loads((project / ".datmo" / "runs" / f"{new['id']}.json").read_text())
    assert record["rerun_of"] == orig["id"]
    assert {k: v for k, v in record["options"].items() if k != "detach"} == {
        k: v for k, v in orig["options"].items() if k != "detach"
    }
    assert checkout_file(cli, new["after_snapshot_id"], "out.txt", tmp_path / "after") == "v1\n"


def test_verify_identical(project: Path, cli: Callable[..., Any], tree: Any) -> None:
    tree(project, {"train.py": "open('model.bin', 'wb').write(b'w' * 64)\nprint('acc: 0.5')\n"})
    assert cli("run", *LOCAL, "python3 train.py").exit_code == 0
    orig = only_run(cli)
    result = cli("rerun", orig["id"], "--verify")
    assert result.exit_code == 0, result.output
    header, _rule, *lines = result.stdout.strip().splitlines()
    assert header.split() == ["kind", "name", "original", "rerun", "same", "difference"]
    rows = {(line.split()[0], line.split()[1]): line.split()[-1] for line in lines}
    # What the run made is compared; train.py, which it did not touch, is not.
    assert rows == {("file", "model.bin"): "same", ("metric", "acc"): "same"}
    assert "reproduced: the 1 file(s) and 1 metric(s) compared are the same" in result.stderr
    assert scratch_removed(project)


TRAIN_RANDOM = (
    "import random, time\n"
    "open('stamp.txt', 'w').write(str(time.time_ns()))\n"
    "open('fixed.txt', 'w').write('same')\n"
    "print('score:', random.random())\n"
    "print('epochs: 2')\n"
)


def test_verify_reports_what_differs(project: Path, cli: Callable[..., Any], tree: Any) -> None:
    tree(project, {"train.py": TRAIN_RANDOM})
    assert cli("run", *LOCAL, "python3 train.py").exit_code == 0
    orig = only_run(cli)
    result = cli("rerun", orig["id"], "--verify", "--format", "json")
    assert result.exit_code == 1, result.output
    rows = verify_rows(result)
    assert rows == {
        ("file", "fixed.txt"): True,
        ("file", "stamp.txt"): False,
        ("metric", "epochs"): True,
        ("metric", "score"): False,
    }
    doc = json.loads(result.stdout)
    stamp = next(r for r in doc["rows"] if r["name"] == "stamp.txt")
    assert stamp["original"] != stamp["rerun"] and stamp["original"].startswith("19 B ")
    score = next(r for r in doc["rows"] if r["name"] == "score")
    assert score["original"] == orig["metrics"]["score"] and "difference" in score
    assert "2 of the 2 file(s) and 2 metric(s) compared differ" in result.stderr
    assert "stamp.txt" in result.stderr and "score" in result.stderr


def test_verify_ignore_and_rtol(project: Path, cli: Callable[..., Any], tree: Any) -> None:
    tree(
        project, {"train.py": TRAIN_RANDOM.replace("random.random()", "1 + random.random() * 1e-9")}
    )
    assert cli("run", *LOCAL, "python3 train.py").exit_code == 0
    orig = only_run(cli)
    loose = cli("rerun", orig["id"], "--verify", "--ignore", "stamp*", "--rtol", "1e-6")
    assert loose.exit_code == 0, loose.output
    assert "stamp.txt" not in loose.stdout
    strict = cli("rerun", orig["id"], "--verify", "--ignore", "stamp*")
    assert strict.exit_code == 1  # the score differs by about 1e-9 without --rtol


def test_verify_never_reads_the_working_tree(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    script = "import json; json.dump({'acc': 0.5}, open('stats.json', 'w'))"
    assert cli("run", *LOCAL, f'python3 -c "{script}"').exit_code == 0
    orig = only_run(cli)
    (project / "stats.json").write_text('{"acc": 0.99}')  # edited by hand afterwards
    result = cli("rerun", orig["id"], "--verify", "--format", "json")
    assert result.exit_code == 0, result.output
    assert verify_rows(result) == {("file", "stats.json"): True, ("metric", "acc"): True}


def test_verify_exit_code_when_the_rerun_itself_fails(
    project: Path, cli: Callable[..., Any], tmp_path: Path
) -> None:
    # The task needs a file outside the project: gone, the rerun fails with the task's
    # own code (7), which CI can tell from "an output differs" (1).
    outside = tmp_path / "needed"
    outside.write_text("x")
    assert cli("run", *LOCAL, f"test -e {outside} || exit 7; echo 'acc: 1'").exit_code == 0
    orig = only_run(cli)
    outside.unlink()
    result = cli("rerun", orig["id"], "--verify")
    assert result.exit_code == 7, result.output
    assert "the rerun itself failed (FAILED); nothing to compare" in result.stderr
    # A run that failed, rerun: the same failure is a reproduction, not a failed rerun.
    assert cli("run", *LOCAL, "echo 'acc: 2'; exit 4").exit_code == 4
    failing = next(r for r in runs(cli) if r["exit_code"] == 4 and not r["rerun_of"])
    again = cli("rerun", failing["id"], "--verify")
    assert again.exit_code == 0, again.output
    assert cli("rerun", orig["id"], "--ignore", "x").exit_code == 125  # needs --verify


def test_rerun_exit_code(project: Path, cli: Callable[..., Any]) -> None:
    assert cli("run", *LOCAL, "echo again; exit 3").exit_code == 3
    orig = only_run(cli)
    again = cli("rerun", orig["id"])
    assert again.exit_code == 3
    assert rerun_of(cli, orig["id"])["status"] == "FAILED"


def test_rerun_detached(project: Path, cli: Callable[..., Any]) -> None:
    assert cli("run", *LOCAL, "echo once more").exit_code == 0
    orig = only_run(cli)
    started = cli("rerun", "-d", orig["id"])
    assert started.exit_code == 0, started.output
    new_id = started.stdout.strip().splitlines()[-1]
    followed = cli("logs", "-f", new_id)
    assert "once more" in followed.stdout
    assert run_doc(cli, new_id)["status"] == "SUCCESS"
    refused = cli("rerun", "-d", "--verify", orig["id"])
    assert refused.exit_code != 0
    assert len(refused.stderr.strip().splitlines()) == 1


def test_rerun_needs_the_secrets_again(
    project: Path, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3tvalue"
    monkeypatch.delenv("API_TOKEN", raising=False)
    command = 'test "${#API_TOKEN}" -eq 11 && echo token-length-ok'
    first = cli("run", *LOCAL, "-e", f"API_TOKEN={secret}", command)
    assert first.exit_code == 0, first.output
    orig = only_run(cli)
    assert orig["secret_env"] == ["API_TOKEN"]

    missing = cli("rerun", orig["id"])
    assert missing.exit_code != 0
    assert "API_TOKEN" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    assert len(runs(cli)) == 1
    assert scratch_removed(project)

    monkeypatch.setenv("API_TOKEN", secret)
    from_env = cli("rerun", orig["id"])
    assert from_env.exit_code == 0, from_env.output
    assert "token-length-ok" in from_env.stdout
    monkeypatch.delenv("API_TOKEN")
    given = cli("rerun", orig["id"], "-e", f"API_TOKEN={secret}")
    assert given.exit_code == 0, given.output
    assert len(runs(cli)) == 3
    assert all(r["secret_env"] == ["API_TOKEN"] for r in runs(cli))
    leaks = [
        str(p.relative_to(project))
        for p in (project / ".datmo").rglob("*")
        if p.is_file() and secret.encode() in p.read_bytes()
    ]
    assert leaks == []


# -- Docker: the same image ---------------------------------------------------------------------


@pytest.fixture
def dproject(project: Path, python_image: str) -> Iterator[Path]:
    (project / "Dockerfile").write_text(f"FROM datmo-test/python:latest\nLABEL {MARK}\n")
    yield project
    found = subprocess.run(
        ["docker", "images", "-aq", "--filter", f"label={MARK}"], capture_output=True, text=True
    ).stdout.split()
    if found:
        subprocess.run(["docker", "rmi", "-f", *set(found)], capture_output=True)


@pytest.mark.docker
def test_docker_rerun_uses_the_same_image(dproject: Path, cli: Callable[..., Any]) -> None:
    first = cli("run", "echo from-image > out.txt")
    assert first.exit_code == 0, first.output
    orig = only_run(cli)
    # The working tree's environment changes; the rerun still uses the recorded image.
    (dproject / "Dockerfile").write_text((dproject / "Dockerfile").read_text() + "LABEL v=2\n")
    again = cli("rerun", orig["id"], "--verify", "--format", "json")
    assert again.exit_code == 0, again.output
    assert "Step " not in again.stderr
    new = rerun_of(cli, orig["id"])
    assert new["image_id"] == orig["image_id"]
    assert new["environment_id"] == orig["environment_id"]
    assert verify_rows(again)[("file", "out.txt")] is True
    assert scratch_removed(dproject)
