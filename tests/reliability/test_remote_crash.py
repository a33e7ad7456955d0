"""Push and pull under SIGKILL at seeded points, two pushes at once, and a remote that
fills up. After every kill both sides stay consistent (`datmo fsck` clean here, `datmo
fsck --remote` clean there) and the next push or pull completes; concurrent pushes of
different runs lose neither; a full remote is one line and stays consistent.
DATMO_CRASH_SEED=N replays the kill points."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from reliability import child_env, context, datmo_argv, fsck_problems, report, seeded

pytestmark = pytest.mark.slow
TRIALS = 12


def datmo(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        datmo_argv(*args), cwd=cwd, env=child_env(), capture_output=True, text=True
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def make_project(root: Path, runs: int) -> list[str]:
    root.mkdir(parents=True)
    datmo("init", "--name", "crash", cwd=root)
    for i in range(runs):
        (root / "train.py").write_text(
            f"import os\nprint('acc: 0.{i}')\nos.makedirs('out', exist_ok=True)\n"
            f"for j in range(6):\n    open(f'out/w{{j}}.bin', 'wb').write(os.urandom(1_200_000))\n"
        )
        datmo("run", "--executor", "local", "python train.py", cwd=root)
    return sorted(ids_in(root / ".datmo" / "runs"))


def ids_in(folder: Path) -> set[str]:
    """Record ids in a folder (a killed writer's dot-named temp file is not a record)."""
    if not folder.is_dir():
        return set()
    return {p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json") and p.name[0] != "."}


def remote_problems(root: Path, name: str = "origin") -> list[str]:
    from datmo.core.controller import remotecheck

    found = remotecheck.check(context(root), name)
    return [p for p in found.problems if "holds no datmo remote" not in p]


def killed(argv: list[str], cwd: Path, delay: float) -> bool:
    """Run argv, SIGKILL its whole process group (git children too) after delay."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=child_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def timed(argv: list[str], cwd: Path) -> float:
    start = time.monotonic()
    subprocess.run(argv, cwd=cwd, env=child_env(), check=True, capture_output=True)
    return time.monotonic() - start


def test_a_push_killed_anywhere_leaves_both_sides_consistent(tmp_path: Path) -> None:
    seed, rng = seeded("push kills")
    proj = tmp_path / "proj"
    ids = make_project(proj, 3)
    remote = tmp_path / "remote"
    datmo("remote", "add", "origin", str(remote), cwd=proj)
    took = timed(datmo_argv("push"), proj)  # the full push, to spread the kills over
    landed = 0
    for trial in range(TRIALS):
        shutil.rmtree(remote)
        landed += killed(datmo_argv("push"), proj, rng.uniform(0, took * 1.2))
        assert remote_problems(proj) == [], f"trial {trial} (seed {seed})"
        assert fsck_problems(proj)[0] == []
        records = remote / "records" / "runs"
        assert ids_in(records) <= set(ids)
        datmo("push", cwd=proj)  # the next push finishes the job
        assert ids_in(records) == set(ids)
        assert remote_problems(proj) == []
    report("push kills", seed=seed, trials=TRIALS, killed=landed, push_s=round(took, 2))
    assert landed >= TRIALS // 3


def test_a_pull_killed_anywhere_leaves_the_project_consistent(tmp_path: Path) -> None:
    seed, rng = seeded("pull kills")
    proj = tmp_path / "proj"
    ids = make_project(proj, 3)
    remote = tmp_path / "remote"
    datmo("remote", "add", "origin", str(remote), cwd=proj)
    datmo("push", cwd=proj)

    def emptied(b: Path) -> Path:
        """A clone with its records and stored files taken out: all to pull again."""
        datmo("clone", str(remote), str(b), cwd=tmp_path)
        for kind in ("runs", "snapshots", "environments"):  # an empty copy of the project
            for doc in (b / ".datmo" / kind).iterdir():
                doc.unlink()
        shutil.rmtree(b / ".datmo" / "objects")
        datmo("fsck", "--repair", cwd=b, check=False)
        return b

    took = timed(datmo_argv("pull"), emptied(tmp_path / "timing"))  # what is killed below
    landed = 0
    for trial in range(TRIALS):
        b = emptied(tmp_path / f"b{trial}")
        assert fsck_problems(b)[0] == []
        landed += killed(datmo_argv("pull"), b, rng.uniform(0, took * 1.2))
        assert fsck_problems(b)[0] == [], f"trial {trial} (seed {seed})"
        datmo("pull", cwd=b)
        assert ids_in(b / ".datmo" / "runs") == set(ids)
        assert fsck_problems(b)[0] == []
        shutil.rmtree(b)
    report("pull kills", seed=seed, trials=TRIALS, killed=landed, clone_s=round(took, 2))
    assert landed >= TRIALS // 3


def test_two_pushes_at_once_lose_nothing(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    make_project(proj, 1)
    remote = tmp_path / "remote"
    datmo("remote", "add", "origin", str(remote), cwd=proj)
    datmo("push", cwd=proj)
    datmo("clone", str(remote), str(tmp_path / "other"), cwd=tmp_path)
    made = []
    for rounds in range(3):
        for where in (proj, tmp_path / "other"):
            (where / "train.py").write_text(
                f"print('acc: {rounds}')\nopen('m.bin','wb').write(b'{where.name}' * 400000)\n"
            )
            datmo("run", "--executor", "local", "python train.py", cwd=where)
        procs = [
            subprocess.Popen(
                datmo_argv("push"), cwd=w, env=child_env(), stderr=subprocess.PIPE, text=True
            )
            for w in (proj, tmp_path / "other")
        ]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        made = {i for w in (proj, tmp_path / "other") for i in ids_in(w / ".datmo" / "runs")}
        assert ids_in(remote / "records" / "runs") == made
        assert remote_problems(proj) == []
    report("concurrent pushes", rounds=3, runs=len(made))


def test_a_remote_that_fills_up_is_one_line_and_stays_consistent(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        proj = tmp_path / "proj"
        make_project(proj, 1)  # about 7 MB of outputs
        datmo("remote", "add", "origin", str(disk / "remote"), cwd=proj)
        full = datmo("push", cwd=proj, check=False)
        assert full.returncode == 4, full.stderr
        line = full.stderr.strip().splitlines()[-1]
        assert line.startswith("datmo: error: the remote") and "full" in line
        assert "Traceback" not in full.stderr
        assert remote_problems(proj) == []
        assert not list((disk / "remote" / "records" / "runs").iterdir())
        assert fsck_problems(proj)[0] == []
        assert json.loads((proj / ".datmo" / "project.json").read_text())["remotes"]
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
