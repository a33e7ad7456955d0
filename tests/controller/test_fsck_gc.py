"""`datmo fsck [--repair]` and `datmo gc [--dry-run]`: every kind of damage is found,
repairs never delete, and gc frees only what nothing refers to."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from reliability import (
    context,
    disk_usage,
    report,
    snapshot_contents,
    snapshot_ids,
    store_digest,
    tree_contents,
)

MiB = 1 << 20
DATMO = ".datmo"


def create(cli: Callable[..., Any], *args: str) -> str:
    r = cli("snapshot", "create", *args)
    assert r.exit_code == 0, r.output
    return r.stdout.strip().splitlines()[-1]


def fsck(cli: Callable[..., Any], *args: str) -> Any:
    r = cli("fsck", *args)
    assert "Traceback" not in r.output and "unexpected error" not in r.output, r.output
    return r


def two_snapshots(project: Path, cli: Callable[..., Any], tree: Any) -> tuple[str, str]:
    tree(project, {"a.py": "print(1)\n", "big.bin": os.urandom(MiB + 10)})
    first = create(cli, "-m", "one")
    tree(project, {"a.py": "print(2)\n", "b.py": "x = 1\n"})
    return first, create(cli, "-m", "two")


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def running_record_with_dead_supervisor(project: Path, before: str) -> str:
    from datmo.core.entity.base import utcnow
    from datmo.core.entity.run import Run
    from datmo.core.storage import runs as records

    run = Run(
        id="ab" * 20,
        command="sleep 100",
        created_at=utcnow(),
        executor="local",
        before_snapshot_id=before,
        started_at=utcnow(),
        supervisor={"pid": dead_pid(), "start": 1},
    )
    records.save(context(project).store, run)
    return run.id


# -- fsck -------------------------------------------------------------------------------------


def test_clean_store_passes(project: Path, cli: Callable[..., Any], tree: Any) -> None:
    two_snapshots(project, cli, tree)
    r = fsck(cli)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("ok: 2 snapshots")
    again = fsck(cli, "--repair")
    assert again.exit_code == 0 and "repaired" not in again.output, again.output


def test_garbled_record_is_found_and_quarantined_never_deleted(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    first, second = two_snapshots(project, cli, tree)
    record = project / DATMO / "snapshots" / f"{first}.json"
    garbled = b'{"id": "' + first.encode() + b'", "created_at": tru'
    record.write_bytes(garbled)
    r = fsck(cli)
    assert r.exit_code != 0
    assert f"snapshots/{first}.json is unreadable" in r.stdout
    fixed = fsck(cli, "--repair")
    assert fixed.exit_code == 0, fixed.output
    assert "quarantine" in fixed.stderr
    kept = project / DATMO / "quarantine" / "snapshots" / f"{first}.json"
    assert kept.read_bytes() == garbled
    assert not record.exists()
    assert fsck(cli).exit_code == 0
    assert cli("snapshot", "inspect", second).exit_code == 0


def test_record_of_the_wrong_shape_is_found(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    first, _ = two_snapshots(project, cli, tree)
    record = project / DATMO / "snapshots" / f"{first}.json"
    record.write_text(json.dumps({"id": first, "message": "no code id"}))
    r = fsck(cli)
    assert r.exit_code != 0 and first in r.stdout, r.output
    assert fsck(cli, "--repair").exit_code == 0
    assert (project / DATMO / "quarantine" / "snapshots" / f"{first}.json").is_file()


def test_missing_snapshot_ref_is_found_and_written_again(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    first, _ = two_snapshots(project, cli, tree)
    ref = project / DATMO / "git" / "refs" / "datmo" / "snapshots" / first
    ref.unlink()
    r = fsck(cli)
    assert r.exit_code != 0 and "git ref is missing" in r.stdout, r.output
    assert fsck(cli, "--repair").exit_code == 0
    commit = json.loads((project / DATMO / "snapshots" / f"{first}.json").read_text())
    assert ref.read_text().strip() == commit["code_commit"]
    assert fsck(cli).exit_code == 0


def test_ref_naming_no_snapshot_is_found(project: Path, cli: Callable[..., Any], tree: Any) -> None:
    first, _second = two_snapshots(project, cli, tree)
    (project / DATMO / "snapshots" / f"{first}.json").unlink()
    r = fsck(cli)
    assert r.exit_code != 0 and "names no snapshot record" in r.stdout, r.output
    assert fsck(cli, "--repair").exit_code == 0
    assert fsck(cli).exit_code == 0


def test_index_that_disagrees_is_found_and_rebuilt(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    _, second = two_snapshots(project, cli, tree)
    running_record_with_dead_supervisor(project, second)
    fsck(cli, "--repair")
    db = sqlite3.connect(project / DATMO / "index.sqlite")
    db.execute("UPDATE runs SET status = 'SUCCESS', doc = '{}'")
    db.commit()
    db.close()
    r = fsck(cli)
    assert r.exit_code != 0 and "run index disagrees" in r.stdout, r.output
    assert fsck(cli, "--repair").exit_code == 0
    assert fsck(cli).exit_code == 0
    listed = json.loads(cli("ls", "--format", "json").stdout)
    assert [d["status"] for d in listed] == ["LOST"]


def test_garbage_index_file_is_rebuilt(project: Path, cli: Callable[..., Any], tree: Any) -> None:
    _, second = two_snapshots(project, cli, tree)
    running_record_with_dead_supervisor(project, second)
    fsck(cli, "--repair")
    for suffix in ("-wal", "-shm"):
        Path(f"{project / DATMO / 'index.sqlite'}{suffix}").unlink(missing_ok=True)
    (project / DATMO / "index.sqlite").write_bytes(b"SQLite format 3\0" + os.urandom(3000))
    r = fsck(cli, "--repair")
    assert r.exit_code == 0, r.output
    assert fsck(cli).exit_code == 0
    assert cli("ls").exit_code == 0


def test_run_left_running_by_a_vanished_supervisor_is_marked_lost(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    _, second = two_snapshots(project, cli, tree)
    run_id = running_record_with_dead_supervisor(project, second)
    r = fsck(cli)
    assert r.exit_code != 0 and "recorded RUNNING, but its supervisor is gone" in r.stdout
    assert fsck(cli, "--repair").exit_code == 0
    doc = json.loads((project / DATMO / "runs" / f"{run_id}.json").read_text())
    assert doc["status"] == "LOST" and doc["ended_at"]
    assert fsck(cli).exit_code == 0


def test_damaged_stored_file_is_found_and_kept(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    two_snapshots(project, cli, tree)
    objects = context(project).store.objects
    big = next(d for d in objects.iter_digests() if objects.size(d) > MiB)
    path = objects.path(big)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    r = fsck(cli)
    assert r.exit_code != 0
    assert f"object {big[:12]} in .datmo/objects does not match its hash" in r.stdout
    again = fsck(cli, "--repair")
    assert again.exit_code != 0  # nothing can derive the lost bytes
    assert path.read_bytes() == bytes(data)  # and nothing deleted the evidence


def test_missing_stored_file_is_found(project: Path, cli: Callable[..., Any], tree: Any) -> None:
    first, _ = two_snapshots(project, cli, tree)
    objects = context(project).store.objects
    big = next(d for d in objects.iter_digests() if objects.size(d) > MiB)
    objects.path(big).unlink()
    r = fsck(cli)
    assert r.exit_code != 0
    assert f"snapshot {first[:8]}: stored copy of 'big.bin' is missing" in r.stdout


def test_damaged_git_object_is_found(project: Path, cli: Callable[..., Any], tree: Any) -> None:
    _first, _ = two_snapshots(project, cli, tree)
    blob = context(project).store.git.blob_id(b"print(1)\n")
    path = project / DATMO / "git" / "objects" / blob[:2] / blob[2:]
    os.chmod(path, 0o644)
    path.write_bytes(zlib.compress(b"blob 9\0print(9)\n"))
    r = fsck(cli)
    assert r.exit_code != 0 and "git:" in r.stdout, r.output


def test_interrupted_checkout_is_found_and_finished(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    first, second = two_snapshots(project, cli, tree)
    journal = project / DATMO / "journal" / "checkout.json"
    journal.write_text(json.dumps({"target": first, "source": second}))
    (project / "b.py").unlink()  # as if the checkout was killed after its first step
    r = fsck(cli)
    assert r.exit_code != 0 and "a checkout was interrupted" in r.stdout
    assert fsck(cli, "--repair").exit_code == 0
    assert not journal.exists()
    assert json.loads((project / DATMO / "current.json").read_text())["id"] == first
    assert (project / "a.py").read_text() == "print(1)\n"
    assert fsck(cli).exit_code == 0


def test_run_naming_a_missing_snapshot_is_found(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    first, _second = two_snapshots(project, cli, tree)
    running_record_with_dead_supervisor(project, first)
    fsck(cli, "--repair")
    # datmo's own delete keeps a snapshot that a run uses; removed by hand, fsck names it.
    kept = cli("snapshot", "delete", first)
    assert kept.exit_code == 0 and "its data stays while run abababab uses it" in kept.stdout
    assert fsck(cli).exit_code == 0
    (project / DATMO / "snapshots" / f"{first}.json").unlink()
    r = fsck(cli)
    assert r.exit_code != 0 and f"snapshot {first[:8]} does not exist" in r.stdout


def test_damaged_project_record_is_found(project: Path, cli: Callable[..., Any], tree: Any) -> None:
    two_snapshots(project, cli, tree)
    (project / DATMO / "project.json").write_text('{"id": ')
    r = fsck(cli)
    assert r.exit_code != 0 and "project.json" in r.stdout, r.output


# -- gc ---------------------------------------------------------------------------------------


def gc_project(project: Path, cli: Callable[..., Any], tree: Any) -> dict[str, Any]:
    """Three snapshots with a 1.5 MiB file each, and a run (log of 1 MiB, hidden snapshots)."""
    expected: dict[str, Any] = {}
    names = []
    for i in range(3):
        for old in project.glob("d*.bin"):
            old.unlink()
        tree(project, {"a.py": f"print({i})\n", f"d{i}.bin": os.urandom(3 * MiB // 2)})
        sid = create(cli, "-m", f"snap {i}")
        names.append(sid)
        expected[sid] = tree_contents(project)
    task = (
        "python3 -c \"import os; open('out.bin','wb').write(os.urandom(1572864)); "
        "print('x' * 1048576)\""
    )
    r = cli("run", "--executor", "local", task)
    assert r.exit_code == 0, r.output
    run = json.loads((next((project / DATMO / "runs").glob("*.json"))).read_text())
    expected[run["after_snapshot_id"]] = tree_contents(project)
    return {"snapshots": names, "run": run, "expected": expected}


def delete_two_and_the_run(cli: Callable[..., Any], made: dict[str, Any]) -> None:
    for sid in made["snapshots"][:2]:
        assert cli("snapshot", "delete", sid).exit_code == 0
    assert cli("delete", made["run"]["id"]).exit_code == 0


def check_remaining(project: Path, tmp_path: Path, made: dict[str, Any]) -> int:
    """Every snapshot left (hidden ones too) checks out byte for byte; how many there are."""
    remaining = snapshot_ids(project)
    for sid in remaining:
        want = made["expected"].get(sid)
        got = snapshot_contents(project, sid, tmp_path)
        if want is not None:
            assert got == want, f"snapshot {sid[:8]} no longer checks out as it was"
        else:  # the run's before snapshot: the project as it was when the run began
            assert got == made["expected"][made["snapshots"][2]]
    return len(remaining)


@pytest.mark.slow
def test_gc_gives_back_space_and_keeps_everything_referenced(
    project: Path, cli: Callable[..., Any], tree: Any, tmp_path: Path
) -> None:
    from datmo.core.controller import gc

    made = gc_project(project, cli, tree)
    before = disk_usage(project / DATMO)
    delete_two_and_the_run(cli, made)  # a run's log goes with its record
    freed = gc.collect(context(project), grace_s=0)
    after = disk_usage(project / DATMO)
    assert freed.objects >= 2 and freed.object_bytes >= 3 * MiB
    assert before - after >= 4 * MiB, (before, after)
    assert not (project / DATMO / "run-data" / made["run"]["id"]).exists()
    left = check_remaining(project, tmp_path, made)
    assert cli("fsck").exit_code == 0
    report(
        "gc",
        du_before=before,
        du_after=after,
        freed_reported=freed.freed,
        snapshots_kept=left,
        stored_files_freed=freed.objects,
    )


@pytest.mark.slow
def test_gc_dry_run_frees_nothing_and_reports_the_same_figure(
    project: Path, cli: Callable[..., Any], tree: Any, tmp_path: Path
) -> None:
    made = gc_project(project, cli, tree)
    delete_two_and_the_run(cli, made)
    hours_ago = time.time() - 2 * 3600
    for folder, dirs, files in os.walk(project / DATMO):
        for name in dirs + files:
            os.utime(os.path.join(folder, name), (hours_ago, hours_ago), follow_symlinks=False)
    before, digest = disk_usage(project / DATMO), store_digest(project)
    dry = cli("gc", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert disk_usage(project / DATMO) == before and store_digest(project) == digest
    real = cli("gc")
    assert real.exit_code == 0, real.output
    after = disk_usage(project / DATMO)
    would = re.match(r"would free (.+?):", dry.stdout)
    did = re.match(r"freed (.+?):", real.stdout)
    assert would and did, (dry.stdout, real.stdout)
    report("gc --dry-run", would_free=would[1], freed=did[1], du_before=before, du_after=after)
    assert before - after >= 3 * MiB
    assert dry.stdout.removeprefix("would free") == real.stdout.removeprefix("freed"), (
        dry.stdout,
        real.stdout,
    )
    check_remaining(project, tmp_path, made)


def test_gc_spares_what_is_younger_than_an_hour(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    first, _ = two_snapshots(project, cli, tree)
    assert cli("snapshot", "delete", first).exit_code == 0
    before = disk_usage(project / DATMO)
    r = cli("gc")
    assert r.exit_code == 0 and r.stdout.startswith("freed 0 B"), r.output
    assert disk_usage(project / DATMO) >= before - 64 * 1024  # git may pack; nothing is freed


def test_gc_refuses_while_a_record_is_unreadable(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    from datmo.core.controller import gc

    _first, second = two_snapshots(project, cli, tree)
    (project / DATMO / "snapshots" / f"{second}.json").write_text("{")
    objects = set(context(project).store.objects.iter_digests())
    r = cli("gc")
    assert r.exit_code != 0 and "Traceback" not in r.output, r.output
    with pytest.raises(Exception):  # noqa: B017 (any refusal will do; deleting is the bug)
        gc.collect(context(project), grace_s=0)
    assert set(context(project).store.objects.iter_digests()) == objects


def test_gc_keeps_the_files_of_a_snapshot_whose_manifest_is_damaged(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    """The snapshot record still refers to its files: a damaged manifest (one flipped
    byte) must not turn every file it listed into garbage."""
    from datmo.core.controller import gc

    first, _ = two_snapshots(project, cli, tree)
    store = context(project).store
    doc = store.read_entity("snapshots", first)
    manifest = store.objects.path(doc["files_id"])
    listed = json.loads(manifest.read_bytes())["files"]
    os.chmod(manifest, 0o644)
    manifest.write_bytes(manifest.read_bytes().replace(b'"files"', b'"filez"'))
    gc.collect(context(project), grace_s=0)
    missing = [p for p, (digest, *_) in listed.items() if not store.objects.has(digest)]
    assert not missing, f"gc deleted the stored copies of {missing}"


def test_gc_frees_the_code_of_a_deleted_snapshot(
    project: Path, cli: Callable[..., Any], tree: Any, tmp_path: Path
) -> None:
    """A deleted snapshot's code (here a 600 kB source file no other snapshot holds)
    is given back, even when a later snapshot was made on top of it."""
    from datmo.core.controller import gc

    tree(project, {"a.py": "print(1)\n", "table.py": os.urandom(300_000).hex()})
    first = create(cli, "-m", "with a big source file")
    (project / "table.py").unlink()
    second = create(cli, "-m", "without it")
    assert cli("snapshot", "delete", first).exit_code == 0
    git_objects = project / DATMO / "git" / "objects"
    before = disk_usage(git_objects)
    freed = gc.collect(context(project), grace_s=0)
    after = disk_usage(git_objects)
    report("gc of code", git_before=before, git_after=after, git_freed_reported=freed.git_bytes)
    assert before - after >= 300_000, (before, after, freed)
    assert snapshot_contents(project, second, tmp_path) == tree_contents(project)


def test_gc_removes_a_pack_left_without_its_index(
    project: Path, cli: Callable[..., Any], tree: Any, tmp_path: Path
) -> None:
    """A crash between a pack's rename and its index's (git's order: no index ever names
    a missing pack) leaves a pack nothing can read; fsck is not troubled by it and gc
    removes it (git's own repack does, under datmo's lock: no pack is being finished)."""
    from datmo.core.controller import gc

    tree(project, {f"src/m{i}.py": f"X = {i}\n" for i in range(150)})  # past the loose limit
    snap = create(cli, "-m", "packed")
    packs = project / DATMO / "git" / "objects" / "pack"
    made = sorted(packs.glob("pack-*.pack"))
    assert made and all(p.with_suffix(".idx").exists() for p in made)
    orphan = packs / f"pack-{'ab' * 20}.pack"
    orphan.write_bytes(made[0].read_bytes())
    assert cli("fsck").exit_code == 0
    gc.collect(context(project), grace_s=3600)
    assert not orphan.exists()
    assert cli("fsck").exit_code == 0
    assert snapshot_contents(project, snap, tmp_path) == tree_contents(project)
