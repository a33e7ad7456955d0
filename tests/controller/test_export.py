"""`checkout --to DIR` (export.py): everything is written into a hidden folder in DIR,
then renamed into place, so a name in DIR always holds its whole, checked content."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from datmo.core.controller import export
from datmo.core.controller import snapshot as snapshots
from datmo.core.controller.checkout import state_of
from datmo.core.controller.project import open_project
from datmo.core.storage.writeout import WriteOut
from datmo.errors import DatmoError

NUL = b"\0binary "  # git's test: a NUL in the first 8,000 bytes makes a file an object


def listing(root: Path) -> dict[str, Any]:
    """path -> (bytes, mode) or ('link', target), hidden names included."""
    out: dict[str, Any] = {}
    for folder, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            full = os.path.join(folder, name)
            rel = os.path.relpath(full, root)
            if os.path.islink(full):
                out[rel] = ("link", os.readlink(full))
            else:
                out[rel] = (Path(full).read_bytes(), stat.S_IMODE(os.lstat(full).st_mode))
    return out


@pytest.fixture
def snap(project: Path, cli: Any, tree: Any) -> tuple[str, dict[str, Any]]:
    tree(
        project,
        {
            "train.py": "lr = 0.1\n",
            "run.sh": "#!/bin/sh\necho hi\n",
            "empty.txt": "",
            "data/a.bin": NUL + os.urandom(5000),
            "data/sub/b.bin": NUL + os.urandom(70_000),
            "data/c.bin": NUL + os.urandom(100),
            "data/empty.bin": b"",
        },
    )
    os.chmod(project / "run.sh", 0o755)
    os.chmod(project / "data" / "c.bin", 0o755)  # an executable object
    os.symlink("train.py", project / "alias.py")
    os.symlink("sub", project / "data" / "to_sub")
    r = cli("snapshot", "create", "-m", "s")
    assert r.exit_code == 0, r.output
    want = {k: v for k, v in listing(project).items() if not k.startswith(".datmo/")}
    return r.stdout.strip(), want


def objects_of(snap_id: str) -> dict[str, str]:
    ctx = open_project()
    return {p: d for p, (d, _, _) in state_of(ctx, snapshots.get(ctx, snap_id)).files.items()}


def test_checkout_to_restores_bytes_modes_links_and_empty_files(
    snap: tuple[str, dict[str, Any]], cli: Any, tmp_path: Path
) -> None:
    sid, want = snap
    assert {"data/a.bin", "data/sub/b.bin", "data/c.bin"} <= set(objects_of(sid))
    r = cli("snapshot", "checkout", sid, "--to", str(tmp_path / "out"))
    assert r.exit_code == 0, r.output
    assert listing(tmp_path / "out") == want  # nothing else: no hidden folder left


def test_checkout_to_merges_into_existing_folders_and_keeps_their_files(
    snap: tuple[str, dict[str, Any]], cli: Any, tmp_path: Path
) -> None:
    sid, want = snap
    out = tmp_path / "out"
    (out / "data" / "sub").mkdir(parents=True)
    (out / "data" / "sub" / "mine.txt").write_text("mine\n")
    (out / "notes.txt").write_text("notes\n")
    r = cli("snapshot", "checkout", sid, "--to", str(out))
    assert r.exit_code == 0, r.output
    got = listing(out)
    assert got.pop("data/sub/mine.txt")[0] == b"mine\n"
    assert got.pop("notes.txt")[0] == b"notes\n"
    assert got == want


@pytest.mark.parametrize("how", ["garble", "truncate"])
def test_a_damaged_object_fails_the_checkout_with_one_line_and_leaves_nothing(
    snap: tuple[str, dict[str, Any]], cli: Any, project: Path, tmp_path: Path, how: str
) -> None:
    sid, _ = snap
    digest = objects_of(sid)["data/sub/b.bin"]
    path = project / ".datmo" / "objects" / digest[:2] / digest[2:]
    data = path.read_bytes()
    os.chmod(path, 0o644)
    if how == "garble":  # the same size: only the one-pass hash can tell
        path.write_bytes(data[:1000] + bytes(b ^ 0xFF for b in data[1000:2000]) + data[2000:])
    else:
        path.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    r = cli("snapshot", "checkout", sid, "--to", str(out))
    assert r.exit_code != 0
    assert digest[:12] in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.output
    assert os.listdir(out) == []  # no file that looks restored, no hidden folder


def test_an_interrupted_checkout_to_leaves_no_name_behind(
    snap: tuple[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, project: Path
) -> None:
    sid, _ = snap
    real = WriteOut.object
    calls: list[str] = []

    def ctrl_c_on_the_second(self: WriteOut, digest: str, size: int, dest: str, mode: int) -> None:
        calls.append(dest)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(self, digest, size, dest, mode)

    monkeypatch.setattr(WriteOut, "object", ctrl_c_on_the_second)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(KeyboardInterrupt):
        export.export(open_project(), sid, out, [], project)
    assert len(calls) == 2
    assert os.listdir(out) == []


def test_a_name_that_appears_meanwhile_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "new").write_text("ours\n")
    (tmp_path / "theirs").write_text("theirs\n")
    with pytest.raises(DatmoError, match="appeared"):
        export._move_new(str(tmp_path / "new"), str(tmp_path / "theirs"))
    assert (tmp_path / "theirs").read_text() == "theirs\n"
    (tmp_path / "folder").mkdir()
    (tmp_path / "their_folder").mkdir()
    with pytest.raises(DatmoError, match="appeared"):
        export._move_new(str(tmp_path / "folder"), str(tmp_path / "their_folder"))
    export._move_new(str(tmp_path / "new"), str(tmp_path / "moved"))
    assert (tmp_path / "moved").read_text() == "ours\n"
    assert not (tmp_path / "new").exists()


def test_a_folder_that_links_out_of_the_destination_is_refused(
    snap: tuple[str, dict[str, Any]], cli: Any, tmp_path: Path
) -> None:
    sid, _ = snap
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(elsewhere, out / "data")
    r = cli("snapshot", "checkout", sid, "--to", str(out))
    assert r.exit_code != 0
    assert "symlink" in r.stderr
    assert os.listdir(elsewhere) == []
