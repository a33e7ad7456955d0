"""Runs and labels name snapshots; tags on runs and snapshots."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import runs

LOCAL = ("--executor", "local")


def ok(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return result


def test_run_ids_and_labels_name_snapshots(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    tree(project, {"a.txt": "v1\n"})
    ok(cli("snapshot", "create", "-m", "base", "-l", "best"))
    ok(cli("run", *LOCAL, "echo v2 > a.txt; echo 'acc: 1'"))
    ok(cli("run", *LOCAL, "echo v3 > a.txt; echo 'acc: 2'"))
    second, first = runs(cli)
    d = json.loads(
        ok(cli("snapshot", "diff", first["id"][:8], second["id"][:8], "--format", "json")).stdout
    )
    assert (d["first"], d["second"]) == (first["after_snapshot_id"], second["after_snapshot_id"])
    assert d["metrics"] == {"acc": [1, 2]}
    before = json.loads(
        ok(cli("snapshot", "inspect", f"{second['id'][:8]}:before", "--format", "json")).stdout
    )
    assert (before[0] if isinstance(before, list) else before)["id"] == second["before_snapshot_id"]
    ok(cli("snapshot", "checkout", "best", "--force"))
    assert (project / "a.txt").read_text() == "v1\n"
    ok(cli("snapshot", "checkout", first["id"][:8]))
    assert (project / "a.txt").read_text() == "v2\n"
    for bad, says in [
        ("nope", "no snapshot, run or label 'nope'"),
        (f"{first['id'][:8]}:middle", "RUN:before and RUN:after name a run's snapshots"),
    ]:
        r = cli("snapshot", "inspect", bad)
        assert r.exit_code != 0 and says in r.stderr and r.stderr.count("\n") == 1, r.output
    ok(cli("snapshot", "create", "-m", "other", "-l", "best", "-c", "x=1"))
    twice = cli("snapshot", "inspect", "best")
    assert twice.exit_code == 1 and "2 snapshots have the label 'best'" in twice.stderr


def test_tags_on_runs_and_snapshots(project: Path, cli: Callable[..., Any], tree: Any) -> None:
    tree(project, {"a.txt": "x\n"})
    ok(cli("run", *LOCAL, "--tag", "baseline", "--tag", "v1", "echo 'acc: 1'"))
    ok(cli("run", *LOCAL, "echo 'acc: 2'"))
    newer, older = runs(cli)
    assert older["tags"] == ["baseline", "v1"] and newer["tags"] == []
    listed = json.loads(ok(cli("ls", "--filter", "tag=baseline", "--format", "json")).stdout)
    assert [r["id"] for r in listed] == [older["id"]]
    assert ok(cli("tag", newer["id"][:8], "best")).stdout.strip() == f"run {newer['id'][:8]}: best"
    ok(cli("tag", older["id"][:8], "v1", "--untag"))
    assert {r["id"]: r["tags"] for r in runs(cli)} == {
        older["id"]: ["baseline"],
        newer["id"]: ["best"],
    }
    assert "tags" in ok(cli("ls")).stdout.splitlines()[0].split()
    not_v1 = json.loads(ok(cli("ls", "--filter", "tag!=best", "--format", "json")).stdout)
    assert [r["id"] for r in not_v1] == [older["id"]]
    snap = ok(cli("snapshot", "create", "-m", "tagged", "--tag", "paper")).stdout.strip()
    ok(cli("tag", snap[:8], "final"))
    shown = json.loads(ok(cli("snapshot", "ls", "--format", "json")).stdout)
    assert next(s for s in shown if s["id"] == snap)["tags"] == ["paper", "final"]
    bad = cli("tag", snap[:8], "has space")
    assert bad.exit_code == 2 and "is not a tag" in bad.stderr


def test_diff_p_shows_the_code_that_changed(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    tree(project, {"main.py": "lr = 0.1\nprint(lr)\n", "same.py": "x = 1\n"})
    first = ok(cli("snapshot", "create", "-m", "one")).stdout.strip()
    tree(project, {"main.py": "lr = 0.01\nprint(lr)\n"})
    second = ok(cli("snapshot", "create", "-m", "two")).stdout.strip()
    shown = ok(cli("snapshot", "diff", first, second, "-p")).stdout
    assert "code     main.py  changed" in shown or "main.py" in shown
    assert "-lr = 0.1\n+lr = 0.01" in shown and "same.py" not in shown.split("diff --git")[1]
    doc = json.loads(
        ok(cli("snapshot", "diff", first, second, "--code", "--format", "json")).stdout
    )
    assert doc["patch"].startswith("diff --git a/main.py b/main.py")
    plain = ok(cli("snapshot", "diff", first, second)).stdout
    assert "+lr = 0.01" not in plain
