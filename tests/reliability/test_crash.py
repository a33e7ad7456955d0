"""SIGKILL at random points of `snapshot create`, `checkout`, `run` (the foreground process
and, separately, its supervisor), as git and SQLite test their crash safety.

After every kill: `datmo fsck` is clean, or `fsck --repair` makes it clean; nothing that
had been completed is lost; the working tree is the old state or the new one once the
next datmo command has run; no run stays RUNNING; no container is left once `datmo stop`
or `fsck --repair` has run. Kill points come from a seeded generator (the seed is
printed; DATMO_CRASH_SEED=N replays it): a delay in [0, the command's typical duration],
measured first."""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reliability import (
    child_env,
    datmo_argv,
    forked_datmo,
    fsck_problems,
    kill_after,
    kill_all,
    processes_with,
    reap,
    report,
    run_docs,
    seeded,
    snapshot_contents,
    snapshot_ids,
    supervisors,
    tree_contents,
    wait_until,
)

pytestmark = pytest.mark.slow

SNAPSHOT_FORKED, SNAPSHOT_EXEC = 70, 15
CHECKOUT_FORKED, CHECKOUT_EXEC = 60, 10
RUN_FOREGROUND, RUN_SUPERVISOR = 30, 30
DOCKER_TRIALS = 4


class Tally:
    """What the kills left behind, for the printed figures."""

    def __init__(self) -> None:
        self.trials = 0
        self.killed = 0
        self.repaired = 0
        self.lost = 0
        self.problems: Counter[str] = Counter()

    def check_store(self, root: Path, before: list[str]) -> None:
        """fsck clean, or clean after --repair; every snapshot that existed is still there."""
        self.trials += 1
        problems, _ = fsck_problems(root)
        if problems:
            self.repaired += 1
            for p in problems:
                self.problems[re.sub(r"[0-9a-f]{8,}", "ID", p)] += 1
            left, repaired = fsck_problems(root, repair=True)
            assert not left, f"fsck --repair left {left} (found {problems}, did {repaired})"
        missing = set(before) - set(snapshot_ids(root))
        self.lost += len(missing)
        assert not missing, f"completed snapshots lost: {sorted(missing)}"

    def figures(self) -> dict[str, Any]:
        shown = "; ".join(f"{k} x{n}" for k, n in self.problems.most_common())
        return {
            "trials": self.trials,
            "killed_mid_way": self.killed,
            "needed_repair": self.repaired,
            "records_lost": self.lost,
            "problems": f"[{shown}]",
        }


def typical(samples: list[float]) -> float:
    return statistics.median(samples)


def timed_fork(args: list[str], cwd: Path) -> float:
    start = time.monotonic()
    pid = forked_datmo(args, cwd)
    assert reap(pid, 60) == 0, f"datmo {' '.join(args)} failed before any kill"
    return time.monotonic() - start


def timed_exec(args: list[str], cwd: Path) -> float:
    start = time.monotonic()
    subprocess.run(datmo_argv(*args), cwd=cwd, env=child_env(), capture_output=True, check=True)
    return time.monotonic() - start


def exec_and_kill(args: list[str], cwd: Path, delay: float) -> bool:
    proc = subprocess.Popen(
        datmo_argv(*args),
        cwd=cwd,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        proc.wait(delay)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def small_tree(root: Path, tree: Any, i: int) -> None:
    tree(
        root,
        {
            ".gitignore": "*.bin\n",
            "a.py": f"print({i})\n",
            "lib/util.py": "def f():\n    return 1\n",
            "data.bin": os.urandom(4096) + str(i).encode(),
            # New each time, and more than LOOSE_LIMIT: each capture writes a pack.
            **{f"pkg/m{k}.py": f"x = {i}, {k}\n" for k in range(150)},
        },
    )


def all_check_out(root: Path, expected: dict[str, Any], scratch: Path) -> int:
    """Every snapshot whose contents we know checks out byte for byte; how many."""
    n = 0
    for sid, want in expected.items():
        assert snapshot_contents(root, sid, scratch) == want, f"snapshot {sid[:8]} changed"
        n += 1
    return n


# -- snapshot create ----------------------------------------------------------------------


def test_kill_snapshot_create(
    project: Path, cli: Callable[..., Any], tree: Any, tmp_path: Path
) -> None:
    seed, rng = seeded("crash: snapshot create")
    tally = Tally()
    expected: dict[str, Any] = {}
    small_tree(project, tree, 0)
    assert cli("snapshot", "create", "-m", "start").exit_code == 0
    expected[snapshot_ids(project)[0]] = tree_contents(project)
    samples_fork, samples_exec = [], []
    for i in range(1, 4):
        small_tree(project, tree, 1000 + i)
        samples_fork.append(timed_fork(["snapshot", "create", "-m", f"timing {i}"], project))
        small_tree(project, tree, 2000 + i)
        samples_exec.append(timed_exec(["snapshot", "create", "-m", f"timing x{i}"], project))
    for sid in snapshot_ids(project):
        expected.setdefault(sid, None)
    expected = {k: v for k, v in expected.items() if v is not None}
    fork_t, exec_t = typical(samples_fork), typical(samples_exec)
    for i in range(SNAPSHOT_FORKED + SNAPSHOT_EXEC):
        small_tree(project, tree, 10_000 + i)
        contents = tree_contents(project)
        before = snapshot_ids(project)
        args = ["snapshot", "create", "-m", f"trial {i}", "-c", f"trial={i}"]
        if i < SNAPSHOT_FORKED:
            killed = kill_after(forked_datmo(args, project), rng.uniform(0, fork_t))
        else:
            killed = exec_and_kill(args, project, rng.uniform(0, exec_t))
        tally.killed += killed
        tally.check_store(project, before)
        for sid in set(snapshot_ids(project)) - set(before):
            expected[sid] = contents  # it was completed: from now on it must stay
        assert tree_contents(project) == contents, "snapshot create changed the working tree"
    checked = all_check_out(project, expected, tmp_path)
    report(
        "crash snapshot create",
        seed=seed,
        typical_s=f"{fork_t:.3f}/{exec_t:.3f}",
        snapshots_checked_out=checked,
        **tally.figures(),
    )


# -- checkout -------------------------------------------------------------------------------


def test_kill_checkout(project: Path, cli: Callable[..., Any], tree: Any, tmp_path: Path) -> None:
    seed, rng = seeded("crash: checkout")
    tally = Tally()
    common = {".gitignore": "*.bin\n", "lib/util.py": "def f():\n    return 1\n"}
    tree(project, {**common, "a.py": "A\n", "only_a.py": "a\n", "data.bin": b"A" * 200_000})
    os.symlink("a.py", project / "link")
    a = cli("snapshot", "create", "-m", "A").stdout.strip()
    state_a = tree_contents(project)
    for p in ("only_a.py", "link"):
        os.unlink(project / p)
    tree(project, {"a.py": "B\n", "only_b/y.py": "b\n", "data.bin": b"B" * 300_000})
    b = cli("snapshot", "create", "-m", "B").stdout.strip()
    state_b = tree_contents(project)
    states = {a: state_a, b: state_b}

    def current() -> str:
        return str(json.loads((project / ".datmo" / "current.json").read_text())["id"])

    samples_fork, samples_exec = [], []
    for i in range(8):  # the first two warm the caches and are not counted
        other = a if current() == b else b
        if i % 2:
            t = timed_exec(["snapshot", "checkout", other], project)
            samples_exec += [t] if i > 1 else []
        else:
            t = timed_fork(["snapshot", "checkout", other], project)
            samples_fork += [t] if i > 1 else []
    fork_t, exec_t = typical(samples_fork), typical(samples_exec)
    outcomes: Counter[str] = Counter()
    for i in range(CHECKOUT_FORKED + CHECKOUT_EXEC):
        source = current()
        target = a if source == b else b
        before = snapshot_ids(project)
        args = ["snapshot", "checkout", target]
        if i < CHECKOUT_FORKED:
            killed = kill_after(forked_datmo(args, project), rng.uniform(0, fork_t))
        else:
            killed = exec_and_kill(args, project, rng.uniform(0, exec_t))
        tally.killed += killed
        nxt = cli("status")  # the next datmo command finishes an interrupted checkout
        assert nxt.exit_code == 0, nxt.output
        now = tree_contents(project)
        assert now in (states[source], states[target]), f"trial {i}: a mix of both snapshots"
        assert now == states[current()], f"trial {i}: current.json does not match the tree"
        outcomes["new" if current() == target else "old"] += 1
        tally.check_store(project, before)
    checked = all_check_out(project, states, tmp_path)
    report(
        "crash checkout",
        seed=seed,
        typical_s=f"{fork_t:.3f}/{exec_t:.3f}",
        ended_old=outcomes["old"],
        ended_new=outcomes["new"],
        snapshots_checked_out=checked,
        **tally.figures(),
    )


# -- run ------------------------------------------------------------------------------------


def settle(root: Path, timeout: float = 40.0) -> None:
    """Wait for every supervisor of the project to be gone (their runs record themselves)."""
    left = wait_until(lambda: not supervisors(root), timeout)
    assert left, f"supervisors still running after {timeout}s: {supervisors(root)}"


def check_runs(root: Path, statuses: Counter[str]) -> None:
    from datmo.core.entity.run import Run
    from datmo.core.task.process import effective as judged

    for doc in run_docs(root):
        assert doc["status"] != "RUNNING", f"run {doc['id'][:8]} stays RUNNING"
        effective = judged(Run.from_dict(doc))
        statuses[effective.status] += 1


def supervisor_child(fg: int, timeout: float = 20.0) -> int | None:
    """The supervisor process `datmo run` (pid fg) starts, as soon as it exists."""

    def find() -> int | None:
        try:
            kids = Path(f"/proc/{fg}/task/{fg}/children").read_text().split()
        except OSError:
            return None
        for kid in kids:
            try:
                argv = Path(f"/proc/{kid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"datmo.cli.supervise" in argv:
                return int(kid)
        return None

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (pid := find()) is not None:
            return pid
        if Path(f"/proc/{fg}").exists() and b"Z" in Path(f"/proc/{fg}/stat").read_bytes()[:80]:
            return None
        time.sleep(0.001)
    return None


TASK = "sleep 0.2"


def test_kill_run_foreground(project: Path, cli: Callable[..., Any], tree: Any) -> None:
    seed, rng = seeded("crash: run (foreground)")
    tally = Tally()
    small_tree(project, tree, 0)
    assert cli("snapshot", "create", "-m", "start").exit_code == 0
    contents = tree_contents(project)
    samples = [timed_exec(["run", "--executor", "local", TASK], project) for _ in range(2)]
    duration = typical(samples)
    settle(project)
    statuses: Counter[str] = Counter()
    for i in range(RUN_FOREGROUND):
        before = snapshot_ids(project)
        args = ["run", "--executor", "local", "-m", f"trial {i}", TASK]
        tally.killed += exec_and_kill(args, project, rng.uniform(0, duration))
        settle(project)
        tally.check_store(project, before)
        assert tree_contents(project) == contents
    check_runs(project, statuses)
    report(
        "crash run foreground",
        seed=seed,
        typical_s=f"{duration:.3f}",
        statuses=dict(statuses),
        **tally.figures(),
    )


def test_kill_run_supervisor(project: Path, cli: Callable[..., Any], tree: Any) -> None:
    seed, rng = seeded("crash: run (supervisor)")
    tally = Tally()
    small_tree(project, tree, 0)
    assert cli("snapshot", "create", "-m", "start").exit_code == 0
    contents = tree_contents(project)

    def start(i: int) -> tuple[subprocess.Popen[bytes], int | None, float]:
        proc = subprocess.Popen(
            datmo_argv("run", "--executor", "local", "-m", f"trial {i}", TASK),
            cwd=project,
            env=child_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return proc, supervisor_child(proc.pid), time.monotonic()

    lifetimes = []
    for i in range(2):
        proc, sup, began = start(-1 - i)
        assert sup is not None
        wait_until(lambda sup=sup: not Path(f"/proc/{sup}/cmdline").read_bytes(), 30, 0.005)
        lifetimes.append(time.monotonic() - began)
        proc.wait(30)
    lifetime = typical(lifetimes)
    settle(project)
    statuses: Counter[str] = Counter()
    for i in range(RUN_SUPERVISOR):
        before = snapshot_ids(project)
        proc, sup, began = start(i)
        assert sup is not None, "no supervisor appeared"
        delay = rng.uniform(0, lifetime)
        time.sleep(max(0.0, delay - (time.monotonic() - began)))
        try:
            os.kill(sup, signal.SIGKILL)
            tally.killed += 1
        except ProcessLookupError:
            pass
        assert proc.wait(60) is not None
        settle(project)
        tally.check_store(project, before)
        assert tree_contents(project) == contents
    check_runs(project, statuses)
    report(
        "crash run supervisor",
        seed=seed,
        typical_s=f"{lifetime:.3f}",
        statuses=dict(statuses),
        **tally.figures(),
    )


def test_stop_ends_the_task_of_a_local_run_whose_supervisor_was_killed(
    project: Path, cli: Callable[..., Any]
) -> None:
    """`datmo stop ID` on a LOST run removes what it left (docs/runs.md): for a local run,
    that is its task process."""
    marker = "sleep 61.4142"
    r = cli("run", "--executor", "local", "-d", marker)
    assert r.exit_code == 0, r.output
    run_id = r.stdout.strip().splitlines()[-1]
    try:
        assert wait_until(lambda: processes_with(marker), 10)
        sup = json.loads((project / ".datmo" / "runs" / f"{run_id}.json").read_text())
        os.kill(sup["supervisor"]["pid"], signal.SIGKILL)
        assert wait_until(lambda: cli("ls", "--format", "json").stdout.count("LOST"), 10)
        stopped = cli("stop", run_id)
        assert stopped.exit_code == 0, stopped.output
        assert "LOST" in stopped.stdout
        left = wait_until(lambda: not processes_with(marker), 5)
        assert left, f"the task of LOST run {run_id[:8]} still runs: {processes_with(marker)}"
    finally:
        kill_all(processes_with(marker))


# -- Docker -----------------------------------------------------------------------------------


def containers_of(run_id: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=datmo.run={run_id}"],
        capture_output=True,
        text=True,
    ).stdout
    return out.split()


def _docker_setup(root: Path, cli: Callable[..., Any]) -> None:
    """A busybox environment, built before any kill, and a first snapshot."""
    (root / "Dockerfile").write_text("FROM datmo-test/busybox:latest\n")
    (root / "a.py").write_text("print(1)\n")
    assert cli("snapshot", "create", "-m", "start").exit_code == 0
    built = cli("environment", "build")
    assert built.exit_code == 0, built.output


@pytest.mark.docker
def test_kill_docker_run_supervisor_leaves_no_container(
    docker_project: Path, cli: Callable[..., Any]
) -> None:
    seed, rng = seeded("crash: docker run (supervisor)")
    root = docker_project
    _docker_setup(root, cli)
    tally = Tally()
    leftovers = 0
    for i in range(DOCKER_TRIALS):
        before = snapshot_ids(root)
        proc = subprocess.Popen(
            datmo_argv("run", "--executor", "docker", "-m", f"trial {i}", "sleep 30"),
            cwd=root,
            env=child_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        sup = supervisor_child(proc.pid)
        assert sup is not None
        time.sleep(rng.uniform(0, 1.5))  # creating and starting a container takes about that
        try:
            os.kill(sup, signal.SIGKILL)
            tally.killed += 1
        except ProcessLookupError:
            pass
        proc.wait(60)
        for doc in run_docs(root):
            if doc["status"] == "RUNNING":
                cli("stop", doc["id"])
        fsck_problems(root, repair=True)
        tally.check_store(root, before)
        for doc in run_docs(root):
            left = containers_of(doc["id"])
            leftovers += len(left)
            assert not left, f"run {doc['id'][:8]} left container(s) {left}"
    report("crash docker run supervisor", seed=seed, containers_left=leftovers, **tally.figures())


@pytest.mark.docker
def test_supervisor_killed_between_container_start_and_record_leaves_no_container(
    docker_project: Path, cli: Callable[..., Any]
) -> None:
    """The narrowest window: the engine has made the container, the run record does not
    name it yet. `datmo stop` and `fsck --repair` must still find and remove it."""
    import docker as sdk

    root = docker_project
    _docker_setup(root, cli)
    client = sdk.from_env()
    proc = subprocess.Popen(
        datmo_argv("run", "--executor", "docker", "sleep 30"),
        cwd=root,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        sup = supervisor_child(proc.pid)
        assert sup is not None
        run_id = wait_until(lambda: [d["id"] for d in run_docs(root)], 20, 0.002)[0]

        def made() -> bool:
            return bool(client.api.containers(all=True, filters={"label": f"datmo.run={run_id}"}))

        assert wait_until(made, 30, 0.002)
        recorded = json.loads((root / ".datmo" / "runs" / f"{run_id}.json").read_text())
        os.kill(sup, signal.SIGKILL)
        proc.wait(60)
        cli("stop", run_id)
        fsck_problems(root, repair=True)
        left = containers_of(run_id)
        report(
            "crash docker window",
            container_id_recorded=bool(recorded["container_id"]),
            containers_left=len(left),
        )
        assert not left, f"container(s) {left} of run {run_id[:8]} left behind"
    finally:
        for cid in containers_of(run_id) if "run_id" in locals() else []:
            subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
        if proc.poll() is None:
            proc.kill()
