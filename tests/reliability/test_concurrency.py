"""Many datmo processes on one project at once: every record made, none lost or damaged,
`datmo fsck` clean afterwards."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reliability import (
    child_env,
    context,
    datmo_argv,
    fsck_problems,
    report,
    snapshot_contents,
    supervisors,
    wait_until,
)

SNAPSHOTS, LOCAL_RUNS, DOCKER_RUNS = 32, 16, 4


def start_all(commands: list[list[str]], cwd: Path) -> list[subprocess.Popen[str]]:
    """Start every command before waiting on any: they all run at once."""
    return [
        subprocess.Popen(
            datmo_argv(*args),
            cwd=cwd,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]


def read_records(root: Path, kind: str) -> dict[str, dict[str, Any]]:
    """Every record of a kind; each must parse and name itself."""
    out = {}
    for path in sorted((root / ".datmo" / kind).glob("*.json")):
        doc = json.loads(path.read_text())
        assert doc["id"] == path.stem, f"{path} names {doc['id']}"
        out[doc["id"]] = doc
    return out


@pytest.mark.slow
@pytest.mark.docker
def test_snapshots_and_runs_all_at_once(
    docker_project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    root = docker_project
    tree(root, {"Dockerfile": "FROM datmo-test/busybox:latest\n", "a.py": "print(1)\n"})
    assert cli("snapshot", "create", "-m", "start").exit_code == 0
    built = cli("environment", "build")
    assert built.exit_code == 0, built.output
    commands = [
        ["snapshot", "create", "-m", f"concurrent {i}", "-c", f"writer={i}"]
        for i in range(SNAPSHOTS)
    ]
    commands += [
        ["run", "--executor", "local", "-m", f"local {i}", f"echo local-output-{i}"]
        for i in range(LOCAL_RUNS)
    ]
    commands += [
        ["run", "--executor", "docker", "-m", f"docker {i}", f"echo docker-output-{i}"]
        for i in range(DOCKER_RUNS)
    ]
    began = time.monotonic()
    procs = start_all(commands, root)
    results = [
        (p.wait(300), p.stdout.read() if p.stdout else "", p.stderr.read() if p.stderr else "")
        for p in procs
    ]
    wall = time.monotonic() - began
    failed = [(c, r) for c, r in zip(commands, results, strict=False) if r[0] != 0]
    assert not failed, failed[:3]
    assert wait_until(lambda: not supervisors(root), 60)

    snaps = read_records(root, "snapshots")
    messages = [s["message"] for s in snaps.values() if not s["hidden"]]
    lost_snaps = [i for i in range(SNAPSHOTS) if messages.count(f"concurrent {i}") != 1]
    printed = {r[1].strip().splitlines()[-1] for r in results[:SNAPSHOTS]}
    assert printed <= set(snaps), "a printed snapshot id has no record"
    assert len(printed) == SNAPSHOTS
    runs = read_records(root, "runs")
    by_message = {r["message"]: r for r in runs.values()}
    wanted = [f"local {i}" for i in range(LOCAL_RUNS)] + [f"docker {i}" for i in range(DOCKER_RUNS)]
    lost_runs = [m for m in wanted if m not in by_message]
    for message, run in by_message.items():
        assert run["status"] == "SUCCESS", (message, run["status"], run.get("error"))
        assert run["before_snapshot_id"] in snaps and run["after_snapshot_id"] in snaps
        log = (root / ".datmo" / "run-data" / run["id"] / "output.log").read_text()
        kind, n = message.split()
        assert f"{kind}-output-{n}" in log, (message, log)
    for snap in snaps.values():
        assert snap["parent_id"] is None or snap["parent_id"] in snaps
    problems, _ = fsck_problems(root)
    listed = json.loads(cli("ls", "--format", "json").stdout)
    report(
        "concurrency",
        processes=len(commands),
        snapshot_creates=SNAPSHOTS,
        local_runs=LOCAL_RUNS,
        docker_runs=DOCKER_RUNS,
        wall_s=f"{wall:.1f}",
        records=len(snaps) + len(runs),
        snapshot_records=len(snaps),
        run_records=len(runs),
        records_lost=len(lost_snaps) + len(lost_runs),
        fsck_problems=len(problems),
    )
    assert not lost_snaps and not lost_runs, (lost_snaps, lost_runs)
    assert len(runs) == LOCAL_RUNS + DOCKER_RUNS and len({*runs}) == len(runs)
    assert sorted(r["id"] for r in listed) == sorted(runs)
    assert not problems, problems


@pytest.mark.slow
def test_gc_while_snapshots_are_written(
    project: Path, cli: Callable[..., Any], tree: Any, tmp_path: Path
) -> None:
    """gc holds the lock and spares young objects: writers racing it lose nothing."""
    tree(project, {"a.py": "print(0)\n"})
    assert cli("snapshot", "create", "-m", "start").exit_code == 0
    n = 8
    folders = []
    for i in range(n):  # each writer snapshots its own copy of the project's data
        data = os.urandom(1 << 20 | i)
        folders.append((f"../src{i}", data))
        (project.parent / f"src{i}").mkdir()
        (project.parent / f"src{i}" / "blob.bin").write_bytes(data)
    commands = [
        ["snapshot", "create", "-m", f"w{i}", "--paths", f"../src{i}>data{i}"] for i in range(n)
    ]
    commands += [["gc"] for _ in range(4)]
    procs = start_all(commands, project)
    codes = [(p.wait(120), p.stderr.read() if p.stderr else "") for p in procs]
    assert all(c == 0 for c, _ in codes), codes
    snaps = read_records(project, "snapshots")
    by_message = {s["message"]: sid for sid, s in snaps.items()}
    from datmo.core.controller import export

    for i, (_, data) in enumerate(folders):
        dest = tmp_path / f"out{i}"
        export.export(context(project), by_message[f"w{i}"], dest, [f"data{i}"], project)
        assert (dest / f"data{i}" / "blob.bin").read_bytes() == data
    problems, _ = fsck_problems(project)
    report(
        "concurrency gc",
        writers=n,
        collectors=4,
        records_lost=n - sum(f"w{i}" in by_message for i in range(n)),
        fsck_problems=len(problems),
    )
    assert not problems, problems
    assert snapshot_contents(project, by_message["w0"], tmp_path)


def test_inits_at_once_make_one_project(tmp_path: Path) -> None:
    """Six `datmo init` at once in a new folder, three rounds: one project each time, and
    every one of them says which (a second id would orphan what the first caller recorded)."""
    said_per_round = []
    for n in range(3):
        root = tmp_path / f"fresh{n}"
        root.mkdir()
        procs = start_all([["init", "--name", "race"] for _ in range(6)], root)
        outs = [(p.wait(60), p.stdout.read() if p.stdout else "") for p in procs]
        assert all(code == 0 for code, _ in outs), outs
        final = json.loads((root / ".datmo" / "project.json").read_text())["id"]
        said = {m[1] for _, out in outs if (m := re.search(r"\(([0-9a-f]{8})\)", out))}
        said_per_round.append((said, final[:8]))
    report("concurrency init", processes=18, ids_reported=[len(s) for s, _ in said_per_round])
    for said, final in said_per_round:
        assert said == {final}, (said, final)


def test_index_refresh_racing_a_writer_keeps_the_newer_record(
    project: Path, cli: Callable[..., Any]
) -> None:
    """A reader brings the index up to date (no lock) while a writer saves a newer record
    between the reader's read and its write. The index must not keep the older copy.

    The interleaving is forced: the reader's record read is wrapped so that the writer's
    save lands right after it, then the reader waits past the index's 20 ms racy window."""
    from datmo.core.controller import run as runs
    from datmo.core.entity.base import utcnow
    from datmo.core.entity.run import Run
    from datmo.core.storage import runs as records
    from datmo.core.storage.index import RunIndex
    from reliability import context as fresh_context

    assert cli("snapshot", "create", "-m", "start").exit_code == 0
    writer = fresh_context(project)
    run = Run(
        id="cd" * 20,
        command="true",
        created_at=utcnow(),
        executor="local",
        status="RUNNING",
        supervisor={"pid": os.getpid()},
    )
    records.save(writer.store, run)
    time.sleep(0.05)
    # A change the index has not seen yet (a record rewritten, the folder changed): the
    # reader must look again.
    os.utime(project / ".datmo" / "runs" / f"{run.id}.json")
    (project / ".datmo" / "runs" / ".probe").touch()
    (project / ".datmo" / "runs" / ".probe").unlink()
    reader_ctx = fresh_context(project)
    idx = RunIndex(reader_ctx.store)
    real_read = reader_ctx.store.read_entity
    interleaved = []

    writers: list[threading.Thread] = []

    def read_then_writer_saves(kind: str, entity_id: str) -> dict[str, Any]:
        doc = real_read(kind, entity_id)
        interleaved.append(entity_id)
        # The writer saves right after the read; it must wait for the reader's lock
        # (a thread, as another process would be), and its save then wins.
        final = run.evolve(status="SUCCESS", exit_code=0, ended_at=utcnow())
        writers.append(threading.Thread(target=records.save, args=(writer.store, final)))
        writers[-1].start()
        time.sleep(0.05)
        return doc

    reader_ctx.store.read_entity = read_then_writer_saves  # type: ignore[method-assign]
    try:
        idx.refresh()
    finally:
        reader_ctx.store.read_entity = real_read  # type: ignore[method-assign]
        idx.close()
        for thread in writers:
            thread.join(30)
    assert interleaved == [run.id], "the reader did not read the record: no race was forced"
    listed = runs.ls(fresh_context(project))
    assert [r.status for r in listed] == ["SUCCESS"], "the index kept the older record"
