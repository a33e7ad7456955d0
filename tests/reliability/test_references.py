"""The referential rules, over generated sequences of deletes (hypothesis): whatever is
deleted in whatever order, with gc in between, `fsck` stays clean and every run still
listed can be rerun from its before snapshot, in its environment."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_datmo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reliability import fsck_problems, report

SETTINGS = settings(
    deadline=None,
    database=None,
    max_examples=12,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
FIGURES: dict[str, int] = {"sequences": 0, "steps": 0, "reruns": 0, "problems": 0}
TRAIN = "open('model.bin', 'wb').write(bytes(range(256)) * 6000)\nprint('acc: 0.5')\n"


def ok(*args: str) -> Any:
    result = run_datmo(*args)
    assert result.exit_code == 0, (args, result.output)
    return result


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project with snapshots, two environments and three local runs, copied anew for
    each generated sequence (making runs is what costs)."""
    import os

    root = tmp_path_factory.mktemp("refs") / "proj"
    root.mkdir()
    here = os.getcwd()
    os.chdir(root)
    try:
        ok("init", "--name", "refs")
        (root / "train.py").write_text(TRAIN)
        (root / "envs").mkdir()
        (root / "envs" / "Dockerfile").write_text("FROM scratch\n")
        ok("environment", "create", "--paths", "envs/Dockerfile", "--name", "other")
        ok("snapshot", "create", "-m", "base", "-l", "base")
        for lr in ("0.1", "0.2", "0.3"):
            ok("run", "--executor", "local", "-c", f"lr={lr}", "python3 train.py")
            (root / "notes.txt").write_text(f"after {lr}\n")
            ok("snapshot", "create", "-m", f"notes {lr}")
    finally:
        os.chdir(here)
    yield root
    report("references", **FIGURES)


STEP = st.sampled_from(
    ["delete-snapshot", "delete-run", "delete-environment", "gc", "checkout", "rerun"]
)


@settings(SETTINGS)
@given(steps=st.lists(st.tuples(STEP, st.integers(0, 9)), min_size=1, max_size=8))
def test_after_any_deletes_fsck_is_clean_and_every_run_reruns(
    template: Path, tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, int]]
) -> None:
    import os

    root = tmp_path_factory.mktemp("seq") / "proj"
    shutil.copytree(template, root, symlinks=True)
    here = os.getcwd()
    os.chdir(root)
    try:
        FIGURES["sequences"] += 1
        for step, pick in steps:
            FIGURES["steps"] += 1
            _apply(root, step, pick)
        problems, _ = fsck_problems(root)
        FIGURES["problems"] += len(problems)
        assert problems == []
        for run in json.loads(ok("ls", "--format", "json").stdout):
            if run["status"] != "SUCCESS":
                continue
            again = ok("rerun", run["id"], "--verify", "--format", "json")
            assert json.loads(again.stdout)["identical"], again.output
            FIGURES["reruns"] += 1
        assert fsck_problems(root)[0] == []
    finally:
        os.chdir(here)


def _choose(items: list[str], pick: int) -> str | None:
    return items[pick % len(items)] if items else None


def _apply(root: Path, step: str, pick: int) -> None:
    if step == "delete-snapshot":
        snaps = [
            s["id"] for s in json.loads(ok("snapshot", "ls", "--all", "--format", "json").stdout)
        ]
        sid = _choose(snaps, pick)
        if sid:
            ok("snapshot", "delete", sid, "--force")
    elif step == "delete-run":
        runs = [r["id"] for r in json.loads(ok("ls", "--format", "json").stdout)]
        rid = _choose(runs, pick)
        if rid:
            ok("delete", rid)
    elif step == "delete-environment":
        envs = [e["id"] for e in json.loads(ok("environment", "ls", "--format", "json").stdout)]
        eid = _choose(envs, pick)
        if eid:
            ok("environment", "delete", eid, "--force")
    elif step == "gc":
        ok("gc", "--grace", "0")
    elif step == "checkout":
        snaps = [s["id"] for s in json.loads(ok("snapshot", "ls", "--format", "json").stdout)]
        sid = _choose(snaps, pick)
        if sid:
            ok("snapshot", "checkout", sid, "--force")
    elif step == "rerun":
        runs = [r["id"] for r in json.loads(ok("ls", "--format", "json").stdout)]
        rid = _choose(runs, pick)
        if rid:
            ok("rerun", rid)
