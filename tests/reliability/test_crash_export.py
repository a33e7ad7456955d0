"""SIGKILL at random points of `checkout --to DIR` (issue 17): the files are written
under their final names in a hidden folder of DIR and renamed into place only once all
are written and on disk, so whatever the kill interrupted, every name DIR shows holds
its whole content, and what is left over is that hidden folder, nothing else."""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reliability import forked_datmo, kill_after, reap, report, seeded, tree_contents

pytestmark = pytest.mark.slow
TRIALS = 16
STAGE = ".datmo-checkout-"


def test_kill_checkout_to_leaves_only_whole_files(
    project: Path, cli: Callable[..., Any], tree: Any, tmp_path: Path
) -> None:
    seed, rng = seeded("crash: checkout --to")
    data = random.Random(seed)
    files = {
        f"data/{d}/{i}.bin": b"\0" + data.randbytes(20_000) for d in range(3) for i in range(100)
    }
    tree(project, {**files, "train.py": "print(1)\n"})
    os.symlink("train.py", project / "alias.py")
    sid = cli("snapshot", "create", "-m", "data").stdout.strip()
    want = {k: v for k, v in tree_contents(project).items() if not k.startswith(".datmo")}

    args = ["snapshot", "checkout", sid, "--to"]
    started = time.monotonic()
    assert reap(forked_datmo([*args, str(tmp_path / "whole")], project), 60) == 0
    typical = time.monotonic() - started
    assert tree_contents(tmp_path / "whole") == want

    killed = leftovers = partial = 0
    for i in range(TRIALS):
        dest = tmp_path / f"out{i}"
        killed += kill_after(forked_datmo([*args, str(dest)], project), rng.uniform(0, typical))
        got = tree_contents(dest) if dest.exists() else {}
        hidden = {p for p in got if p.startswith(STAGE)}
        shown = {p: v for p, v in got.items() if p not in hidden}
        assert all(want.get(p) == v for p, v in shown.items()), f"trial {i}: a torn file shows"
        leftovers += bool(hidden)
        partial += 0 < len(shown) < len(want)
        if dest.exists():  # the hidden folder is all there is to clean up
            for name in os.listdir(dest):
                if name.startswith(STAGE):
                    shutil.rmtree(dest / name)
    report(
        "crash checkout --to",
        seed=seed,
        trials=TRIALS,
        killed_mid_way=killed,
        left_a_hidden_folder=leftovers,
        some_names_shown=partial,
        torn_files_shown=0,
    )
