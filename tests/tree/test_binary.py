"""Small binary files go to the object store, not git (issue 17): git's own test, a NUL
in the first 8,000 bytes. The stat cache keeps the decision; snapshots taken before
still check out, and a file that only moved from code to files is no change."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from datmo.core.storage.project import find_project
from datmo.core.tree import reading
from datmo.core.tree.reading import is_binary

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 40


def create(cli: Any, *args: str) -> str:
    r = cli("snapshot", "create", *args)
    assert r.exit_code == 0, r.output
    return str(r.stdout.strip())


def manifest(root: Path, sid: str) -> dict[str, Any]:
    ctx = find_project(root)
    snap = json.loads((root / ".datmo" / "snapshots" / f"{sid}.json").read_text())
    code = ctx.store.git.read_tree(snap["code_id"])
    files = json.loads(ctx.store.objects.read_bytes(snap["files_id"]))["files"]
    return {"code": sorted(code), "files": sorted(files)}


def exported(cli: Any, sid: str, dest: Path) -> dict[str, bytes]:
    r = cli("snapshot", "checkout", sid, "--to", str(dest))
    assert r.exit_code == 0, r.output
    return {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()}


def no_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Any, job: Any) -> Any:
        raise AssertionError(f"read {job[0].path}, which the stat cache vouches for")

    monkeypatch.setattr(reading.Reader, "__call__", refuse)


def test_gits_test_a_nul_in_the_first_8000_bytes() -> None:
    assert is_binary(b"abc\0def")
    assert not is_binary(b"plain text\n" * 100)
    assert not is_binary(b"x" * 8000 + b"\0")  # past where git looks
    assert is_binary(b"x" * 7999 + b"\0")
    assert not is_binary("caf\u00e9 \u2603\n".encode())  # UTF-8 is text


def test_a_small_binary_file_is_a_file_and_text_stays_code(
    project: Path, cli: Any, tree: Any, tmp_path: Path
) -> None:
    tree(project, {"train.py": "print(1)\n", "img/cat.jpg": JPEG, "notes.txt": "hi\n"})
    sid = create(cli, "-m", "one")
    assert manifest(project, sid) == {"code": ["notes.txt", "train.py"], "files": ["img/cat.jpg"]}
    assert exported(cli, sid, tmp_path / "out") == {
        "train.py": b"print(1)\n",
        "img/cat.jpg": JPEG,
        "notes.txt": b"hi\n",
    }
    status = cli("status")
    assert status.exit_code == 0 and "nothing changed" in status.output, status.output


def test_an_unchanged_tree_is_described_again_without_reading_a_file(
    project: Path, cli: Any, tree: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree(project, {"a.py": "x = 1\n", "b.bin": JPEG, "big.dat": b"\0" * 2_000_000})
    past = 1_600_000_000_000_000_000  # well before now: no racy entries in the stat cache
    for name in ("a.py", "b.bin", "big.dat"):
        os.utime(project / name, ns=(past, past))
    sid = create(cli, "-m", "one")
    (project / ".datmo" / "cache" / "treestamp").unlink(
        missing_ok=True
    )  # no shortcut: a full description
    no_reads(monkeypatch)
    assert "nothing changed" in cli("status").output
    again = cli("snapshot", "create", "-m", "one")
    assert again.exit_code == 0 and sid in again.output, again.output


def test_a_file_that_stops_being_ignored_is_judged_by_its_content(
    project: Path, cli: Any, tree: Any
) -> None:
    tree(project, {".gitignore": "*.txt\n", "a.txt": "text\n", "b.txt": JPEG})
    first = create(cli, "-m", "ignored")
    assert manifest(project, first)["files"] == ["a.txt", "b.txt"]
    (project / ".gitignore").write_text("")
    second = create(cli, "-m", "not ignored")
    assert manifest(project, second) == {"code": [".gitignore", "a.txt"], "files": ["b.txt"]}


def test_a_snapshot_from_before_moves_to_files_without_a_change_of_content(
    project: Path, cli: Any, tree: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree(project, {"run.sh": "echo hi\n", "img/cat.jpg": JPEG, "img/dog.jpg": JPEG[::-1]})
    os.chmod(project / "img" / "dog.jpg", 0o755)
    with monkeypatch.context() as m:  # as datmo did before issue 17: by size only
        m.setattr(reading, "is_binary", lambda data: False)
        old = create(cli, "-m", "before the upgrade")
    assert manifest(project, old)["files"] == []
    for name in ("stat", "treestamp"):  # a fresh clone has neither
        (project / ".datmo" / "cache" / name).unlink(missing_ok=True)
    status = cli("status")
    assert "nothing changed" in status.output, status.output  # code then, files now

    new = create(cli, "-m", "after the upgrade")
    assert new != old
    assert manifest(project, new)["files"] == ["img/cat.jpg", "img/dog.jpg"]
    diff = cli("snapshot", "diff", old, new, "--format", "json")
    assert diff.exit_code == 0, diff.output
    doc = json.loads(diff.stdout)
    for part in ("code", "files"):
        assert doc[part] == {"added": [], "removed": [], "changed": []}, doc
    want = {"run.sh": b"echo hi\n", "img/cat.jpg": JPEG, "img/dog.jpg": JPEG[::-1]}
    assert exported(cli, old, tmp_path / "old") == want
    assert exported(cli, new, tmp_path / "new") == want
    assert cli("snapshot", "checkout", old).exit_code == 0  # no unsaved changes
    assert cli("fsck").exit_code == 0
    assert cli("snapshot", "delete", new).exit_code == 0
    assert cli("gc").exit_code == 0  # frees the objects only the new snapshot held
    assert cli("fsck").exit_code == 0
    assert exported(cli, old, tmp_path / "after-gc") == want


def test_a_changed_file_that_moved_is_one_change_where_it_is_now(
    project: Path, cli: Any, tree: Any
) -> None:
    tree(project, {"a.dat": "text at first\n"})
    old = create(cli, "-m", "text")
    (project / "a.dat").write_bytes(JPEG)
    new = create(cli, "-m", "binary")
    doc = json.loads(cli("snapshot", "diff", old, new, "--format", "json").stdout)
    assert doc["code"] == {"added": [], "removed": [], "changed": []}
    assert doc["files"] == {"added": [], "removed": [], "changed": ["a.dat"]}


def test_snapshots_from_before_and_after_travel_in_a_bundle(
    project: Path, cli: Any, tree: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree(project, {"a.py": "x = 1\n", "img/cat.jpg": JPEG})
    with monkeypatch.context() as m:
        m.setattr(reading, "is_binary", lambda data: False)
        old = create(cli, "-m", "before")
    (project / "img" / "dog.jpg").write_bytes(JPEG[::-1])
    new = create(cli, "-m", "after")
    bundle = tmp_path / "all.datmo"
    assert cli("bundle", "create", str(bundle), "--all").exit_code == 0
    monkeypatch.chdir(tmp_path)
    cloned = cli("clone", str(bundle), "fresh")
    assert cloned.exit_code == 0, cloned.output
    monkeypatch.chdir(tmp_path / "fresh")
    assert cli("fsck").exit_code == 0
    assert exported(cli, old, tmp_path / "o") == {"a.py": b"x = 1\n", "img/cat.jpg": JPEG}
    assert exported(cli, new, tmp_path / "n") == {
        "a.py": b"x = 1\n",
        "img/cat.jpg": JPEG,
        "img/dog.jpg": JPEG[::-1],
    }
