"""The kept answer of an unchanged re-snapshot (datmo.core.tree.unchanged).

The console script answers `datmo snapshot create -m MSG` from it without loading
datmo's records, so every input of that answer must void it when it changes: each
change below must make answer() decline, and, for the changes users make, the
command that follows must do what the full path does (a new snapshot where
something changed; the same one, repaired, where nothing did). Its files' owner is
checked in test_ownership.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import imported_modules, run_datmo

from datmo.cli import quick
from datmo.core.controller.project import open_project
from datmo.core.storage import cachefile
from datmo.core.tree import unchanged
from datmo.core.util import probe

BASE: dict[str, Any] = {
    "train.py": "import os\nprint('train')\n",
    "stats.json": '{"acc": 0.5}\n',
    "data": {"weights.bin": b"\1" * (2 << 20)},  # over the threshold: a stored file
}


def _age() -> None:
    """Past the racy window: an answer is only kept when no watched time is that new."""
    time.sleep(3 * probe.RACY_NS / 1e9)


def _create(*args: str) -> str:
    _age()
    result = run_datmo("snapshot", "create", *args)  # the full path (click)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def _answer(project: Path, message: str = "same", label: str | None = None) -> str | None:
    found = unchanged.answer(str(project), message, label)
    return None if found is None else found[0]


@pytest.fixture
def kept(project: Path, tree: Any) -> str:
    """A project whose unchanged re-snapshot answer is kept; the current snapshot's id."""
    tree(project, BASE)
    first = _create("-m", "same")
    for _ in range(3):  # the first re-snapshots may still meet files too new to trust
        assert _create("-m", "same") == first
        if _answer(project) == first:
            return first
    raise AssertionError("no answer was kept for an unchanged project")


def _run_quick(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[str, str]:
    capsys.readouterr()
    assert quick.run(["snapshot", "create", *args]) == 0
    out = capsys.readouterr()
    return out.out.strip(), out.err


def _record(project: Path, sid: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((project / ".datmo" / "snapshots" / f"{sid}.json").read_text())
    return doc


def test_the_kept_answer_says_what_the_full_path_says(
    kept: str, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / ".datmoignore").write_text("*.log\n")
    (project / "x.log").write_text("left out\n")
    (project / "server.pem").write_text("left out, and said\n")
    sid = _create("-m", "same")  # .datmoignore is code: a new snapshot
    assert sid != kept and _create("-m", "same") == sid
    assert _answer(project) == sid
    out, err = _run_quick(capsys, "-m", "same")
    full = run_datmo("--debug", "snapshot", "create", "-m", "same")
    assert (out, err) == (full.stdout.strip(), full.stderr)
    assert "server.pem (may hold secrets)" in err and "nothing changed" in err
    assert "x.log" not in err
    assert out == sid
    assert len(list((project / ".datmo" / "snapshots").iterdir())) == 2


def test_the_answer_loads_no_records(kept: str, project: Path) -> None:
    # The answer is kept per interpreter and package path: the subprocess's first call
    # keeps its own.
    args = ["snapshot", "create", "-m", "same"]
    for _ in range(3):
        _age()
        names = imported_modules(args, project)
        if "datmo.core.controller.snapshot" not in names:
            break
    assert "datmo.core.tree.unchanged" in names  # it ran
    heavy = {"click", "datmo.core.controller.snapshot", "datmo.core.entity.snapshot"}
    assert not (heavy | {"json", "dataclasses", "typing"}) & names
    # Another message is not known: the full path runs, and the check above can fail.
    other = imported_modules(["snapshot", "create", "-m", "other"], project)
    assert heavy - {"click"} <= other and {"json", "dataclasses", "typing"} <= other


def test_from_a_subfolder(kept: str, project: Path) -> None:
    (project / "sub").mkdir()
    _create("-m", "same")  # a new folder: a new stamp
    _create("-m", "same")
    assert _answer(project / "sub") == kept == _answer(project)


def test_other_words_are_not_known(kept: str, project: Path) -> None:
    assert _answer(project, "Same") is None
    assert _answer(project, "same", label="best") is None
    assert _answer(project, "same ") is None


# -- changes that make the next snapshot a new one ---------------------------------------
def _edit_code(project: Path) -> None:
    (project / "train.py").write_text("import os\nprint('changed')\n")


def _add_config(project: Path) -> None:
    (project / "config.json").write_text('{"lr": 0.1}\n')


def _edit_stats(project: Path) -> None:
    (project / "stats.json").write_text('{"acc": 0.9}\n')


def _add_dockerfile(project: Path) -> None:
    (project / "Dockerfile").write_text("FROM scratch\n")


CHANGES: dict[str, Callable[[Path], None]] = {
    "code edited": _edit_code,
    "config.json added": _add_config,
    "stats.json edited": _edit_stats,
    "Dockerfile added": _add_dockerfile,
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_a_change_makes_a_new_snapshot(
    kept: str, project: Path, change: Callable[[Path], None], capsys: pytest.CaptureFixture[str]
) -> None:
    change(project)
    assert _answer(project) is None
    out, _ = _run_quick(capsys, "-m", "same")
    assert out != kept


def test_a_left_out_config_file_still_counts(
    project: Path, tree: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """config.json read for the config, but left out of the snapshot's files by the user:
    the tree stamp does not watch it, the kept answer must."""
    tree(project, {**BASE, ".datmoignore": "config.json\n", "config.json": '{"lr": 1}\n'})
    first = _create("-m", "same")
    _create("-m", "same")
    _create("-m", "same")
    assert _answer(project) == first
    (project / "config.json").write_text('{"lr": 2}\n')
    assert _answer(project) is None
    out, _ = _run_quick(capsys, "-m", "same")
    assert out != first and _record(project, out)["config"] == {"lr": 2}


def test_updating_the_current_snapshot(kept: str, project: Path) -> None:
    assert run_datmo("snapshot", "update", kept, "-m", "renamed").exit_code == 0
    assert _answer(project) is None
    assert _answer(project, "renamed") is None  # not kept for the new words either
    assert _create("-m", "renamed") == kept


def test_checkout_and_delete_move_the_current_snapshot(kept: str, project: Path) -> None:
    _edit_code(project)
    second = _create("-m", "second")
    assert run_datmo("snapshot", "checkout", kept).exit_code == 0
    assert _answer(project, "second") is None and _answer(project) is None
    assert _create("-m", "same") == kept  # back where it was kept
    _create("-m", "same")
    assert _answer(project) == kept
    assert run_datmo("snapshot", "delete", kept, "--force").exit_code == 0
    assert _answer(project) is None
    assert _create("-m", "same") not in (kept, second)


def test_another_environment(kept: str, project: Path) -> None:
    ctx = open_project()
    ctx.save_info(dataclasses.replace(ctx.info, active_environment_id="f" * 40))
    assert _answer(project) is None


def test_another_size_threshold(kept: str, project: Path) -> None:
    ctx = open_project()
    ctx.save_info(dataclasses.replace(ctx.info, file_threshold=1 << 30))  # weights.bin: code
    assert _answer(project) is None
    assert _create("-m", "same") != kept


# -- changes after which the same snapshot is the answer, found the full way -------------
def _object_of(project: Path, digest: str) -> Path:
    return project / ".datmo" / "objects" / digest[:2] / digest[2:]


@pytest.mark.parametrize("which", ["files_id", "requirements_id", "stored file", "code"])
def test_a_removed_object_is_stored_again(kept: str, project: Path, which: str) -> None:
    doc = _record(project, kept)
    if which == "code":
        git_objects = project / ".datmo" / "git" / "objects"
        path = git_objects / doc["code_id"][:2] / doc["code_id"][2:]
    elif which == "stored file":
        manifest = json.loads(_object_of(project, doc["files_id"]).read_bytes())
        path = _object_of(project, manifest["files"]["data/weights.bin"][0])
    else:
        path = _object_of(project, doc[which])
    assert path.is_file()
    path.chmod(0o600)
    path.unlink()
    assert _answer(project) is None
    assert _create("-m", "same") == kept
    assert path.is_file()


def test_a_checkout_journal_goes_the_full_way(kept: str, project: Path) -> None:
    journal = project / ".datmo" / "journal" / "checkout.json"
    journal.parent.mkdir(exist_ok=True)
    journal.write_text("{}")
    assert _answer(project) is None


def test_gc_drops_the_answer(kept: str, project: Path) -> None:
    assert run_datmo("gc").exit_code == 0
    assert _answer(project) is None
    assert not (project / ".datmo" / "cache" / "unchanged").exists()


def test_a_moved_project(kept: str, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    moved = project.with_name("moved")
    project.rename(moved)
    monkeypatch.chdir(moved)
    assert _answer(moved) is None
    assert _create("-m", "same") == kept


def test_installed_packages(
    kept: str, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site-packages"
    site.mkdir()
    # A new folder on the path (sys.path[0] is the script's own): another fingerprint.
    monkeypatch.setattr(sys, "path", [sys.path[0], str(site), *sys.path[1:]])
    assert _answer(project) is None
    _create("-m", "same")
    _create("-m", "same")
    assert _answer(project) == kept
    (site / "newpkg-1.0.dist-info").mkdir()  # an install changes its folder's mtime
    assert _answer(project) is None


def test_machine_and_template(kept: str, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:
        m.setattr(probe, "machine", lambda: ["another", "boot"])
        assert _answer(project) is None
    with monkeypatch.context() as m:
        m.setattr(probe, "folder_stamp", lambda top, rel: "edited")
        assert _answer(project) is None
    assert _answer(project) == kept


@pytest.mark.parametrize("damage", [b"", b"garbage", None])
def test_a_damaged_answer_is_ignored(
    kept: str, project: Path, damage: bytes | None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = project / ".datmo" / "cache" / "unchanged"
    data = path.read_bytes()
    path.write_bytes(data[:-7] if damage is None else damage)
    assert _answer(project) is None
    out, _ = _run_quick(capsys, "-m", "same")
    assert out == kept


@pytest.mark.parametrize("part", [*range(10), 10])
def test_an_answer_of_the_wrong_shape_is_ignored(kept: str, project: Path, part: int) -> None:
    """Well framed (as a buggy or older writer would leave it) but not the shape read."""
    path = project / ".datmo" / "cache" / "unchanged"
    data = list(cachefile.read(path, unchanged._MAGIC, unchanged.FORMAT_VERSION))
    assert len(data) == 10 and _answer(project) == kept
    wrong = {8: [(5, None)], 9: ([], [], (5, 5, "x")), 10: ([], [], 5)}
    data[min(part, 9)] = wrong.get(part, 5)  # 5: an fd's number, where a path belongs
    cachefile.write(path, unchanged._MAGIC, unchanged.FORMAT_VERSION, tuple(data), None)
    assert _answer(project) is None


# -- when no answer is kept ----------------------------------------------------------------
def _nothing_kept(project: Path) -> bool:
    return not (project / ".datmo" / "cache" / "unchanged").exists()


def test_not_kept_for_a_file_too_new_to_trust(kept: str, project: Path) -> None:
    (project / ".datmo" / "cache" / "unchanged").unlink()
    ahead = time.time_ns() + 5 * probe.SECOND_NS  # its next change could keep this mtime
    # Not a file of the tree (the tree stamp would not be written either): the answer's own.
    os.utime(project / ".datmo" / "project.json", ns=(ahead, ahead))
    run = run_datmo("snapshot", "create", "-m", "same")
    assert run.stdout.strip() == kept
    assert _nothing_kept(project)


def test_not_kept_with_a_root_dockerfile(project: Path, tree: Any) -> None:
    tree(project, {**BASE, "Dockerfile": "FROM scratch\nCOPY *.txt /\n"})
    first = _create("-m", "same")
    assert _create("-m", "same") == first and _create("-m", "same") == first
    assert _nothing_kept(project)


def test_not_kept_for_a_linked_config_file(project: Path, tree: Any, tmp_path: Path) -> None:
    outside = tmp_path / "exp.json"
    outside.write_text('{"lr": 1}\n')
    tree(project, BASE)
    (project / "config.json").symlink_to(outside)
    first = _create("-m", "same")
    assert _create("-m", "same") == first and _create("-m", "same") == first
    assert _nothing_kept(project)
    outside.write_text('{"lr": 2}\n')  # the link stays as it was
    assert _create("-m", "same") != first


@pytest.mark.parametrize("extra", [["-c", "lr=1"], ["-s", "acc=0.5"]])
def test_not_kept_for_other_options(kept: str, project: Path, extra: list[str]) -> None:
    (project / ".datmo" / "cache" / "unchanged").unlink()
    sid = _create("-m", "with", *extra)
    assert _create("-m", "with", *extra) == sid
    assert _nothing_kept(project)


@pytest.mark.parametrize("cache", ["builtin-python", "treestamp"])
def test_a_hand_damaged_cache_never_fails_the_create(kept: str, project: Path, cache: str) -> None:
    """Keeping an answer is a shortcut: a NUL in a path it would sign is no error."""
    (project / ".datmo" / "cache" / cache).write_bytes(b"key ab\0cd\n")
    result = run_datmo("snapshot", "create", "-m", "same")
    assert (result.exit_code, result.stdout.strip()) == (0, kept), result.output


def test_no_answer_outside_a_project(tmp_path: Path) -> None:
    assert unchanged.answer(str(tmp_path), "same", None) is None


def test_a_copy_with_the_same_answer_file_is_not_trusted(kept: str, project: Path) -> None:
    copy = project.with_name("copy")
    shutil.copytree(project, copy, symlinks=True)
    assert _answer(copy) is None  # another root
