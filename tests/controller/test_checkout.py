"""`datmo snapshot checkout`: restores exactly, never loses work, finishes after a crash."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

MiB = 1 << 20
JOURNAL = Path(".datmo") / "journal" / "checkout.json"


def create(cli: Any, *args: str) -> str:
    r = cli("snapshot", "create", *args)
    assert r.exit_code == 0, r.output
    return r.stdout.strip()


def checkout(cli: Any, *args: str) -> Any:
    return cli("snapshot", "checkout", *args)


def tree_of(root: Path, skip: tuple[str, ...] = (".datmo",)) -> dict[str, Any]:
    """path -> bytes (with an exec flag) or ('link', target); top-level `skip` left out."""
    out: dict[str, Any] = {}
    for folder, dirs, files in os.walk(root):
        if Path(folder) == root:
            dirs[:] = [d for d in dirs if d not in skip]
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            full = os.path.join(folder, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if os.path.islink(full):
                out[rel] = ("link", os.readlink(full))
            else:
                out[rel] = (Path(full).read_bytes(), os.access(full, os.X_OK))
    return out


def digest_of(folder: Path) -> str:
    """A hash of every name, mode, mtime and byte under folder (links not followed),
    leaving out the project's own .datmo."""
    h = hashlib.sha256()
    for top, dirs, files in os.walk(folder):
        if (Path(top) / ".datmo" / "project.json").is_file():
            dirs.remove(".datmo")
        dirs.sort()
        for name in sorted(dirs + files):
            full = os.path.join(top, name)
            st = os.lstat(full)
            h.update(f"{os.path.relpath(full, folder)}\0{st.st_mode}\0{st.st_mtime_ns}\0".encode())
            if os.path.islink(full):
                h.update(os.readlink(full).encode())
            elif os.path.isfile(full):
                h.update(Path(full).read_bytes())
    return h.hexdigest()


def current(root: Path) -> str | None:
    path = root / ".datmo" / "current.json"
    return json.loads(path.read_text())["id"] if path.exists() else None


def is_clean(cli: Any) -> bool:
    r = cli("status", "--format", "json")
    assert r.exit_code == 0, r.output
    return bool(json.loads(r.stdout)["clean"])


@pytest.fixture
def two(project, cli, tree) -> tuple[str, dict[str, Any], str, dict[str, Any]]:
    """Snapshots A and B (current) with code, large files, folders and a link that differ."""
    tree(
        project,
        {
            "train.py": "lr = 0.1\n",
            "run.sh": "#!/bin/sh\necho a\n",
            "model/weights.bin": os.urandom(MiB + 10),
            "only_a/deep/x.txt": "only in A\n",
            "shared.txt": "same in both\n",
        },
    )
    os.chmod(project / "run.sh", 0o755)
    os.symlink("shared.txt", project / "alias.txt")
    a = create(cli, "-m", "A")
    state_a = tree_of(project)
    (project / "only_a" / "deep" / "x.txt").unlink()
    for d in ("only_a/deep", "only_a"):
        (project / d).rmdir()
    (project / "alias.txt").unlink()
    os.symlink("train.py", project / "alias.txt")
    tree(
        project,
        {
            "train.py": "lr = 0.2\n",
            "model/weights.bin": os.urandom(MiB + 20),
            "only_b.txt": "only in B\n",
            "run.sh": "#!/bin/sh\necho b\n",
        },
    )
    b = create(cli, "-m", "B")
    state_b = tree_of(project)
    assert state_a != state_b
    return a, state_a, b, state_b


def test_checkout_restores_code_and_files_exactly(project, cli, two):
    a, state_a, b, state_b = two
    r = checkout(cli, a[:6])
    assert r.exit_code == 0, r.output
    assert tree_of(project) == state_a
    assert not (project / "only_b.txt").exists()
    assert current(project) == a
    assert is_clean(cli)
    r = checkout(cli, b)
    assert r.exit_code == 0, r.output
    assert tree_of(project) == state_b
    assert not (project / "only_a").exists()  # emptied folders go too
    assert current(project) == b


def test_checkout_from_a_subfolder_restores_the_whole_project(project, cli, two, monkeypatch):
    a, state_a, _, _ = two
    monkeypatch.chdir(project / "model")
    r = checkout(cli, a)
    assert r.exit_code == 0, r.output
    assert tree_of(project) == state_a


def test_checkout_refuses_unsaved_changes_and_touches_nothing(project, cli, two):
    a, _, b, _ = two
    (project / "train.py").write_text("lr = 0.3  # not saved\n")
    (project / "new.txt").write_text("new work\n")
    before = digest_of(project)
    r = checkout(cli, a)
    assert r.exit_code != 0
    assert "unsaved" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert digest_of(project) == before
    assert current(project) == b


def test_force_saves_the_dirty_state_as_a_hidden_snapshot(project, cli, two):
    a, state_a, b, _ = two
    (project / "train.py").write_text("lr = 0.3  # not saved\n")
    (project / "new.txt").write_text("new work\n")
    dirty = tree_of(project)
    r = checkout(cli, a, "--force")
    assert r.exit_code == 0, r.output
    assert tree_of(project) == state_a
    listed = json.loads(cli("snapshot", "ls", "--format", "json").stdout)
    everything = json.loads(cli("snapshot", "ls", "--all", "--format", "json").stdout)
    hidden = [s["id"] for s in everything if s["id"] not in {x["id"] for x in listed}]
    assert len(hidden) == 1
    assert {x["id"] for x in listed} == {a, b}
    assert hidden[0][:8] in r.stderr and "checkout" in r.stderr  # how to return
    back = checkout(cli, hidden[0][:8])
    assert back.exit_code == 0, back.output
    assert tree_of(project) == dirty


def test_checkout_keeps_excluded_and_never_snapshotted_paths(project, cli, tree):
    venv = {"pyvenv.cfg": "home = /usr/bin\n", "lib/site-packages/pkg.py": "v = 1\n"}
    tree(
        project,
        {
            ".datmoignore": "data/\n",
            ".venv": venv,
            "data/big.csv": "1,2,3\n",
            ".env": "TOKEN=abc\n",
            "a.py": "a = 1\n",
            "pkg/mod.py": "m = 1\n",
            "pkg/__pycache__/mod.cpython-311.pyc": b"\x00compiled",
        },
    )
    a = create(cli, "-m", "A")
    (project / "pkg" / "mod.py").unlink()
    tree(project, {"a.py": "a = 2\n"})
    b = create(cli, "-m", "B without pkg/mod.py")
    keep = ["data", ".venv", ".env", "pkg/__pycache__"]

    def kept() -> dict[str, Any]:
        return {
            k: digest_of(project / k) if (project / k).is_dir() else (project / k).read_bytes()
            for k in keep
        }

    before = kept()
    for target in (a, b, a):
        r = checkout(cli, target)
        assert r.exit_code == 0, r.output
        assert kept() == before
    assert (project / "pkg" / "mod.py").read_text() == "m = 1\n"


def test_checkout_never_touches_the_users_git_folder(project, cli, tree):
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=project, check=True, capture_output=True)

    git("init", "-q")
    tree(project, {"a.py": "a = 1\n", "data.bin": os.urandom(MiB + 1)})
    git("add", "a.py")
    git("commit", "-qm", "one")
    a = create(cli, "-m", "A")
    tree(project, {"a.py": "a = 2\n", "b.py": "b\n"})
    git("add", "a.py", "b.py")
    git("commit", "-qm", "two")
    b = create(cli, "-m", "B")
    before = digest_of(project / ".git")
    for target in (a, b, a):
        assert checkout(cli, target).exit_code == 0
    (project / "a.py").write_text("dirty\n")
    assert checkout(cli, b, "--force").exit_code == 0
    assert digest_of(project / ".git") == before
    assert (project / "a.py").read_text() == "a = 2\n"


def test_checkout_refuses_to_overwrite_a_path_no_snapshot_holds(project, cli, tree):
    # A stored .env on purpose; B does not; a new .env (a secret, left out by default) must
    # not be overwritten by going back to A.
    tree(project, {".datmoignore": "!.env\n", ".env": "OLD=1\n", "a.py": "a\n"})
    a = create(cli, "-m", "A with .env")
    (project / ".datmoignore").unlink()
    (project / ".env").unlink()
    create(cli, "-m", "B")
    (project / ".env").write_text("NEW_SECRET=2\n")
    assert is_clean(cli)
    before = digest_of(project)
    for args in ((a,), (a, "--force")):
        r = checkout(cli, *args)
        assert r.exit_code != 0, r.output
        assert ".env" in r.stderr
        assert (project / ".env").read_text() == "NEW_SECRET=2\n"
        assert digest_of(project) == before


def test_checkout_swaps_a_file_and_a_folder_of_the_same_name(project, cli, tree):
    tree(project, {"a.py": "a\n", "model": "a file\n"})
    a = create(cli, "-m", "model is a file")
    (project / "model").unlink()
    tree(project, {"model/w.bin": os.urandom(MiB + 1), "model/cfg.py": "c\n"})
    b = create(cli, "-m", "model is a folder")
    state_b = tree_of(project)
    assert checkout(cli, a).exit_code == 0
    assert (project / "model").read_text() == "a file\n"
    r = checkout(cli, b)
    assert r.exit_code == 0, r.output
    assert tree_of(project) == state_b


def test_a_checkout_that_cannot_finish_is_refused_before_touching_anything(project, cli, tree):
    """A damaged store (a stored file gone) must be found before the first file changes:
    otherwise the tree is left half-way and the journal blocks every later command."""
    from blake3 import blake3

    big = os.urandom(MiB + 1)
    tree(project, {"a.py": "a\n", "big.bin": big})
    a = create(cli, "-m", "A")
    (project / "big.bin").unlink()
    tree(project, {"b.py": "b\n"})
    b = create(cli, "-m", "B")
    digest = blake3(big).hexdigest()
    (project / ".datmo" / "objects" / digest[:2] / digest[2:]).unlink()
    before = digest_of(project)
    r = checkout(cli, a)
    assert r.exit_code != 0
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert digest_of(project) == before  # b.py is still there
    assert current(project) == b
    assert cli("snapshot", "ls").exit_code == 0
    assert cli("status").exit_code == 0


# -- interrupted checkouts ------------------------------------------------------------------


def _write_journal(root: Path, target: str, source: str) -> None:
    (root / JOURNAL).parent.mkdir(exist_ok=True)
    (root / JOURNAL).write_text(json.dumps({"target": target, "source": source}))


@pytest.mark.parametrize(
    "args",
    [
        ("snapshot", "ls"),
        ("status",),
        ("snapshot", "inspect", "{b}"),
        ("snapshot", "create", "-m", "after the crash"),
        ("init", "--name", "renamed"),
    ],
)
def test_a_killed_checkout_is_finished_by_the_next_command(project, cli, two, args):
    a, state_a, b, _ = two
    # As if killed half-way from B to A: the journal is written, a few paths changed.
    _write_journal(project, a, b)
    (project / "train.py").write_text("lr = 0.1\n")  # already restored
    (project / "only_b.txt").unlink()  # already removed
    (project / "model" / "weights.bin").write_bytes(b"half a copy")  # torn
    (project / "model" / ".datmo-restore-k1ll3d").write_bytes(b"half a temp file")
    (project / "only_a" / "deep").mkdir(parents=True)
    r = cli(*(arg.format(b=b) for arg in args))
    assert r.exit_code == 0, r.output
    assert not (project / JOURNAL).exists()
    assert tree_of(project) == state_a
    assert current(project) in ([a] if args[1:2] != ("create",) else [a, r.stdout.strip()])
    assert is_clean(cli)


def test_a_killed_checkout_is_finished_from_a_subfolder(project, cli, two, monkeypatch):
    a, state_a, b, _ = two
    _write_journal(project, a, b)
    (project / "only_b.txt").unlink()
    monkeypatch.chdir(project / "model")
    assert cli("snapshot", "ls").exit_code == 0
    assert tree_of(project) == state_a
    assert current(project) == a


def test_a_checkout_that_fails_mid_way_is_finished_later(project, cli, two, monkeypatch):
    from datmo.core.controller import checkout as checkout_module

    a, state_a, _, _ = two
    real = checkout_module._write_bytes
    calls = []

    def fail_second(*args: Any, **kw: Any) -> None:
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("power cut")
        real(*args, **kw)

    monkeypatch.setattr(checkout_module, "_write_bytes", fail_second)
    r = checkout(cli, a)
    assert r.exit_code != 0
    assert len(calls) == 2
    assert (project / JOURNAL).exists()
    assert not (project / "only_b.txt").exists()  # it got part of the way
    assert (project / "train.py").read_text() == "lr = 0.2\n"
    monkeypatch.setattr(checkout_module, "_write_bytes", real)
    r = cli("status")
    assert r.exit_code == 0, r.output
    assert tree_of(project) == state_a
    assert current(project) == a
    assert not (project / JOURNAL).exists()


# -- checkout --to ------------------------------------------------------------------------------


def test_checkout_to_writes_elsewhere_without_touching_the_tree(project, cli, two, tmp_path):
    a, state_a, _, state_b = two
    out = tmp_path / "old"
    r = checkout(cli, a, "--to", str(out))
    assert r.exit_code == 0, r.output
    assert tree_of(out) == state_a
    assert tree_of(project) == state_b


def test_checkout_to_some_paths_relative_to_the_current_folder(
    project, cli, two, tmp_path, monkeypatch
):
    a, state_a, _, state_b = two
    out = tmp_path / "some"
    r = checkout(cli, a, "--to", str(out), "model/weights.bin", "only_a")
    assert r.exit_code == 0, r.output
    assert tree_of(out) == {k: v for k, v in state_a.items() if k.startswith(("model/", "only_a/"))}
    monkeypatch.chdir(project / "model")
    r = checkout(cli, a, "--to", "../../from_sub", "weights.bin")
    assert r.exit_code == 0, r.output
    assert tree_of(tmp_path / "from_sub") == {"model/weights.bin": state_a["model/weights.bin"]}
    assert tree_of(project) == state_b


def test_checkout_to_refuses_a_folder_inside_the_project(project, cli, two):
    a, _, _, state_b = two
    for dest in ("inside", str(project / "model" / "x"), "."):
        r = checkout(cli, a, "--to", dest)
        assert r.exit_code != 0
        assert "inside the project" in r.stderr
    assert tree_of(project) == state_b


def test_checkout_to_refuses_existing_files(project, cli, two, tmp_path):
    a, _, _, _ = two
    empty = tmp_path / "empty"
    empty.mkdir()
    assert checkout(cli, a, "--to", str(empty), "train.py").exit_code == 0  # empty is fine
    assert (empty / "train.py").read_text() == "lr = 0.1\n"
    out = tmp_path / "busy"
    out.mkdir()
    (out / "train.py").write_text("mine\n")
    r = checkout(cli, a, "--to", str(out))
    assert r.exit_code != 0
    assert "train.py" in r.stderr
    assert sorted(os.listdir(out)) == ["train.py"]
    assert (out / "train.py").read_text() == "mine\n"


def test_checkout_to_a_path_outside_the_project_is_a_clear_error(project, cli, two, tmp_path):
    a, _, _, _ = two
    (tmp_path / "elsewhere.txt").write_text("x")
    r = checkout(cli, a, "--to", str(tmp_path / "out"), "../elsewhere.txt")
    assert r.exit_code != 0
    assert "outside the project" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
