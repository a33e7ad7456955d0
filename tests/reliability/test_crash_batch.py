"""SIGKILL in the middle of a batched capture (issue 17): many small binary files stored
with one durability pass at the end. A killed capture leaves no record naming a missing
or torn object, fsck stays clean, and the next snapshot stores the tree whole."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reliability import (
    forked_datmo,
    fsck_problems,
    kill_after,
    reap,
    report,
    seeded,
    snapshot_contents,
    snapshot_ids,
    tree_contents,
)

pytestmark = pytest.mark.slow
TRIALS = 12


def binary_tree(root: Path, tree: Any, rng: random.Random, tag: int) -> None:
    files = {
        f"img/{d}/{i}.jpg": b"\xff\xd8\0" + rng.randbytes(6000)
        for d in range(4)
        for i in range(150)
    }
    tree(root, {**files, "train.py": f"print({tag})\n"})


def test_kill_mid_batch_leaves_no_record_naming_a_missing_object(
    project: Path, cli: Callable[..., Any], tree: Any, tmp_path: Path
) -> None:
    seed, rng = seeded("crash: batched capture")
    binary_tree(project, tree, rng, 0)
    start = time.monotonic()
    assert reap(forked_datmo(["snapshot", "create", "-m", "timing"], project), 60) == 0
    typical = time.monotonic() - start
    killed, expected = 0, {}
    for i in range(TRIALS):
        binary_tree(project, tree, rng, i + 1)  # all new bytes: every object a new one
        contents, before = tree_contents(project), snapshot_ids(project)
        killed += kill_after(
            forked_datmo(["snapshot", "create", "-m", f"t{i}"], project), rng.uniform(0, typical)
        )
        problems, _ = fsck_problems(project)
        assert problems == [], problems
        for sid in set(snapshot_ids(project)) - set(before):
            expected[sid] = contents
    r = cli("snapshot", "create", "-m", "after the kills")
    assert r.exit_code == 0, r.output
    expected[r.stdout.strip()] = tree_contents(project)
    for sid, want in expected.items():
        assert snapshot_contents(project, sid, tmp_path) == want
    assert fsck_problems(project)[0] == []
    report(
        "crash batched capture",
        seed=seed,
        trials=TRIALS,
        killed_mid_way=killed,
        snapshots_checked_out=len(expected),
    )
