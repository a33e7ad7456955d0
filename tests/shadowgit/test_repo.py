"""The shadow repository, checked against real git at every step."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import subprocess
import tarfile
import time
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from datmo.core.shadowgit import repo as gitmod
from datmo.core.shadowgit.repo import ATTRIBUTES, EMPTY_TREE, ShadowRepo
from datmo.core.storage.fsutil import Owner
from datmo.errors import CorruptStore, DatmoError, DiskFull

UID = GID = 4242  # an unused uid, as a user's project would be owned by


@pytest.fixture
def repo(tmp_path: Path) -> ShadowRepo:
    root = tmp_path / "proj"
    root.mkdir()
    r = ShadowRepo(root / ".datmo" / "git", root)
    r.init()
    return r


def out(repo: ShadowRepo, *args: str, input: bytes | None = None) -> bytes:
    return repo.run(*args, input=input).stdout


def files_of(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every path below folder -> (mode, sha256 of content or link target)."""
    seen: dict[str, tuple[int, bytes]] = {}
    for top, dirs, names in os.walk(folder):
        for name in dirs + names:
            p = Path(top, name)
            st = p.lstat()
            data = (
                os.readlink(p).encode() if p.is_symlink() else b"" if p.is_dir() else p.read_bytes()
            )
            seen[str(p.relative_to(folder))] = (st.st_mode, hashlib.sha256(data).digest())
    return seen


def ls_tree(repo: ShadowRepo, tree: str) -> dict[str, tuple[str, str]]:
    entries = {}
    for line in out(repo, "ls-tree", "-r", "-z", tree).split(b"\0"):
        if line:
            meta, _, path = line.partition(b"\t")
            mode, _, sha = meta.decode().split(" ")
            entries[os.fsdecode(path)] = (mode, sha)
    return entries


def archive(repo: ShadowRepo, commit: str, *config: str) -> dict[str, bytes]:
    args = [a for kv in config for a in ("-c", kv)]
    data = out(repo, *args, "archive", "--format=tar", commit)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {
            m.name: (m.linkname.encode() if m.issym() else tar.extractfile(m).read())  # type: ignore[union-attr]
            for m in tar.getmembers()
            if not m.isdir()
        }


# -- init and run -------------------------------------------------------------------------


def test_init_creates_an_isolated_repository(repo: ShadowRepo) -> None:
    assert repo.exists()
    assert (repo.gitdir / "info" / "attributes").read_bytes() == ATTRIBUTES
    assert "/.datmo/" in (repo.gitdir / "info" / "exclude").read_text().splitlines()
    assert not (repo.gitdir / "hooks").exists()  # no sample hooks
    for key, value in {**gitmod.CONFIG, "core.worktree": "../.."}.items():
        assert out(repo, "config", "--get", key).decode().strip() == value
    assert out(repo, "rev-parse", "--show-toplevel").decode().strip() == str(repo.worktree)
    scopes = {
        ln.split("\t")[0]
        for ln in out(repo, "config", "--list", "--show-scope").decode().splitlines()
    }
    assert scopes <= {"local", "command"}  # no global or system settings reach git
    assert repo.has_object(EMPTY_TREE)
    assert (repo.gitdir / "objects" / EMPTY_TREE[:2] / EMPTY_TREE[2:]).is_file()
    assert repo.fsck() == []


def test_exists_is_false_before_init(tmp_path: Path) -> None:
    assert not ShadowRepo(tmp_path / ".datmo" / "git", tmp_path).exists()


def test_init_again_keeps_objects_and_refs(repo: ShadowRepo) -> None:
    tree = repo.write_tree({"a.py": ("100644", repo.write_blob(b"print(1)\n"))})
    commit = repo.commit(tree, "one")
    repo.update_ref("refs/datmo/snapshots/one", commit)
    repo.init()
    assert repo.read_ref("refs/datmo/snapshots/one") == commit
    assert repo.read_tree(repo.read_commit_tree(commit)) == ls_tree(repo, tree)
    assert repo.fsck() == []


def test_run_ignores_the_git_environment(
    repo: ShadowRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR"):
        monkeypatch.setenv(var, str(elsewhere))
    monkeypatch.setenv("GIT_INDEX_FILE", str(elsewhere / "index"))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'core.autocrlf'='true'")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(elsewhere / "gitconfig"))
    (elsewhere / "gitconfig").write_text("[core]\n\tautocrlf = true\n")
    lines = out(repo, "rev-parse", "--git-dir", "--show-toplevel").decode().split()
    assert lines == [str(repo.gitdir), str(repo.worktree)]
    assert out(repo, "config", "--get", "core.autocrlf").strip() == b"false"
    assert b"global" not in out(repo, "config", "--list", "--show-scope")
    assert list(elsewhere.iterdir()) == [elsewhere / "gitconfig"]


def test_run_reports_git_errors(
    repo: ShadowRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DatmoError, match=r"^git cat-file failed: fatal: ") as info:
        repo.run("cat-file", "-t", "0" * 40)
    assert "\n" not in str(info.value)
    assert repo.run("cat-file", "-t", "0" * 40, check=False).returncode == 128
    monkeypatch.setenv("PATH", str(tmp_path))  # no git here
    with pytest.raises(DatmoError, match="git is not installed"):
        repo.run("--version")


# -- writing objects ----------------------------------------------------------------------

CONTENTS = [b"", b"hello\n", b"a\r\nb\r\n", b"no newline", b"\0\xff" * 3000, bytes(range(256)) * 64]


@pytest.mark.parametrize("data", CONTENTS, ids=range(len(CONTENTS)))
def test_blobs_match_git(repo: ShadowRepo, data: bytes) -> None:
    sha = repo.write_blob(data)
    assert sha == repo.blob_id(data)
    assert sha == out(repo, "hash-object", "--no-filters", "--stdin", input=data).decode().strip()
    assert out(repo, "cat-file", "-t", sha) == b"blob\n"
    assert out(repo, "cat-file", "blob", sha) == data
    assert repo.read_object(sha) == ("blob", data)
    path = repo.gitdir / "objects" / sha[:2] / sha[2:]
    assert path.stat().st_mode & 0o777 == 0o444


def test_write_blob_skips_existing_objects_and_leaves_no_temp_files(repo: ShadowRepo) -> None:
    sha = repo.write_blob(b"same")
    path = repo.gitdir / "objects" / sha[:2] / sha[2:]
    before = path.stat().st_mtime_ns
    time.sleep(0.01)
    assert repo.write_blob(b"same") == sha
    assert path.stat().st_mtime_ns == before
    assert not [p for p in (repo.gitdir / "objects").rglob("tmp_obj_*")]


def test_write_blob_file_reads_files_and_links_without_following(repo: ShadowRepo) -> None:
    root = repo.worktree
    (root / "f.sh").write_bytes(b"#!/bin/sh\r\necho hi\n")
    os.symlink("f.sh", root / "to_file")
    os.symlink("../no such/target", root / "dangling")
    assert repo.write_blob_file(root / "f.sh") == repo.blob_id(b"#!/bin/sh\r\necho hi\n")
    for link in ("to_file", "dangling"):
        target = os.readlink(root / link).encode()
        sha = repo.write_blob_file(root / link)
        assert (
            sha
            == out(repo, "hash-object", "--no-filters", "--stdin", input=target).decode().strip()
        )
        assert repo.read_object(sha) == ("blob", target)
    with pytest.raises(FileNotFoundError):  # the caller reports vanished files itself
        repo.write_blob_file(root / "gone")


def test_write_blob_file_refuses_fifos_and_folders_without_hanging(repo: ShadowRepo) -> None:
    os.mkfifo(repo.worktree / "pipe")
    with pytest.raises(DatmoError, match="not a regular file"):
        repo.write_blob_file(repo.worktree / "pipe")
    (repo.worktree / "folder").mkdir()
    with pytest.raises(DatmoError, match="not a regular file"):
        repo.write_blob_file(repo.worktree / "folder")


def test_disk_full_is_reported_as_disk_full(
    repo: ShadowRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gitmod, "mkstemp", full)
    with pytest.raises(DiskFull, match="disk full"):
        repo.write_blob(b"new content")


def _index_tree(repo: ShadowRepo, entries: dict[str, tuple[str, str]]) -> str:
    """What `git write-tree` makes of the same entries, via a real index."""
    args = [
        a for path, (mode, sha) in entries.items() for a in ("--cacheinfo", f"{mode},{sha},{path}")
    ]
    repo.run("update-index", "--add", *args)
    try:
        return out(repo, "write-tree").decode().strip()
    finally:
        (repo.gitdir / "index").unlink()


def test_trees_match_git_write_tree(repo: ShadowRepo) -> None:
    blob = repo.write_blob(b"x\n")
    link = repo.write_blob(b"target")
    paths = [
        "a.b", "a-b/c", "a/b", "a0", "Foo", "foo/bar.py", "foo.txt", "foo-bar", "foo0",
        "foo/sub/deep/er/file", "sp ace/é.txt", "z", "foo/bar.py.orig", "foo/bar/x",
    ]  # fmt: skip
    entries = {p: ("100644", blob) for p in paths}
    entries["run.sh"] = ("100755", blob)
    entries["foo/link"] = ("120000", link)
    tree = repo.write_tree(entries)
    assert tree == _index_tree(repo, entries)
    assert ls_tree(repo, tree) == entries
    assert repo.read_tree(tree) == entries
    assert repo.write_tree(dict(reversed(entries.items()))) == tree  # input order is irrelevant
    assert repo.fsck() == []


def test_tree_sort_order_puts_a_folder_after_names_with_lower_bytes(repo: ShadowRepo) -> None:
    blob = repo.write_blob(b"")
    entries = {"foo/x": ("100644", blob), "foo.txt": ("100644", blob), "foo-bar": ("100644", blob)}
    tree = repo.write_tree(entries)
    # git compares a folder as "foo/": '-' (0x2d) < '.' (0x2e) < '/' (0x2f)
    names = [ln.split("\t")[1] for ln in out(repo, "ls-tree", tree).decode().splitlines()]
    assert names == ["foo-bar", "foo.txt", "foo"]
    assert tree == _index_tree(repo, entries)


def test_empty_tree(repo: ShadowRepo) -> None:
    path = repo.gitdir / "objects" / EMPTY_TREE[:2] / EMPTY_TREE[2:]
    path.unlink()
    assert repo.write_tree({}) == EMPTY_TREE
    assert path.is_file()
    assert out(repo, "cat-file", "-t", EMPTY_TREE) == b"tree\n"
    assert repo.read_tree(EMPTY_TREE) == {}


@pytest.mark.parametrize(
    "entries",
    [
        {"a": ("100644", "0" * 40), "a/b": ("100644", "0" * 40)},  # a file and a folder
        {"../x": ("100644", "0" * 40)},
        {"a/../b": ("100644", "0" * 40)},
        {"a//b": ("100644", "0" * 40)},
        {"/abs": ("100644", "0" * 40)},
        {"dir/": ("100644", "0" * 40)},
        {".git/config": ("100644", "0" * 40)},
        {"sub/.GIT": ("100644", "0" * 40)},
        {"a": ("100664", "0" * 40)},
        {"a": ("040000", "0" * 40)},
        {"a": ("100644", "xyz")},
        {"a": ("100644", "00")},
    ],
)
def test_write_tree_refuses_bad_entries(
    repo: ShadowRepo, entries: dict[str, tuple[str, str]]
) -> None:
    with pytest.raises(ValueError):
        repo.write_tree(entries)


def test_commits_are_what_git_expects(repo: ShadowRepo) -> None:
    tree = repo.write_tree({"a": ("100644", repo.write_blob(b"a"))})
    ist = timezone(timedelta(hours=5, minutes=30))
    first = repo.commit(tree, "first", when=datetime(2023, 11, 14, 22, 13, 20, tzinfo=ist))
    nst = timezone(-timedelta(hours=3, minutes=30))
    second = repo.commit(
        tree, "snapshot ✓\n\nbody", [first], datetime(2024, 1, 2, 3, 4, 5, tzinfo=nst)
    )
    raw = out(repo, "cat-file", "commit", first).decode()
    assert raw == (
        f"tree {tree}\nauthor datmo <datmo@localhost> 1699980200 +0530\n"
        "committer datmo <datmo@localhost> 1699980200 +0530\n\nfirst\n"
    )
    fmt = "%T|%P|%an|%ae|%at|%ai|%cn|%B"
    shown = out(repo, "show", "-s", f"--format={fmt}", second).decode()
    stamp = int(datetime(2024, 1, 2, 3, 4, 5, tzinfo=nst).timestamp())
    assert shown.startswith(
        f"{tree}|{first}|datmo|datmo@localhost|{stamp}|2024-01-02 03:04:05 -0330|datmo|"
    )
    assert shown.endswith("snapshot ✓\n\nbody\n\n")
    assert repo.read_commit_tree(second) == tree
    assert repo.fsck() == []
    naive = repo.commit(tree, "local time", when=datetime(2024, 6, 1, 12, 0, 0))
    assert (
        str(int(datetime(2024, 6, 1, 12).timestamp()))
        in out(repo, "cat-file", "commit", naive).decode()
    )


def test_commit_refuses_missing_tree_or_parent(repo: ShadowRepo) -> None:
    with pytest.raises(CorruptStore, match=r"1{40} .* is missing"):
        repo.commit("1" * 40, "x")
    with pytest.raises(CorruptStore, match=r"2{40}"):
        repo.commit(EMPTY_TREE, "x", ["2" * 40])


# -- refs ---------------------------------------------------------------------------------


def test_refs_round_trip_and_agree_with_git(repo: ShadowRepo) -> None:
    c1 = repo.commit(EMPTY_TREE, "one")
    c2 = repo.commit(EMPTY_TREE, "two", [c1])
    repo.update_ref("refs/datmo/snapshots/aaa", c1)
    repo.update_ref("refs/datmo/snapshots/bbb", c2)
    repo.update_ref("refs/datmo/runs/r1", c2)
    assert (repo.gitdir / "refs/datmo/snapshots/aaa").read_text() == c1 + "\n"
    assert repo.read_ref("refs/datmo/snapshots/aaa") == c1
    assert repo.read_ref("refs/datmo/snapshots/none") is None
    assert repo.list_refs("refs/datmo/snapshots/") == {
        "refs/datmo/snapshots/aaa": c1,
        "refs/datmo/snapshots/bbb": c2,
    }
    listed = out(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/datmo/").decode()
    assert dict(ln.split() for ln in listed.splitlines()) == repo.list_refs()
    assert repo.list_refs("refs/datmo/snap") == repo.list_refs("refs/datmo/snapshots/")
    assert repo.list_refs("") == repo.list_refs("refs/") == repo.list_refs()
    # Leftovers of an interrupted write or of git's locking are not refs.
    (repo.gitdir / "refs/datmo/snapshots/.ccc.x1y2.tmp").write_text(c1 + "\n")
    (repo.gitdir / "refs/datmo/snapshots/ddd.lock").write_text(c1 + "\n")
    assert set(repo.list_refs()) == {
        "refs/datmo/snapshots/aaa",
        "refs/datmo/snapshots/bbb",
        "refs/datmo/runs/r1",
    }
    repo.update_ref("refs/datmo/snapshots/aaa", c2)
    assert repo.read_ref("refs/datmo/snapshots/aaa") == c2
    repo.delete_ref("refs/datmo/snapshots/aaa")
    repo.delete_ref("refs/datmo/snapshots/aaa")  # already gone: no error
    assert repo.read_ref("refs/datmo/snapshots/aaa") is None
    assert b"snapshots/aaa" not in out(repo, "for-each-ref")


def test_packed_refs_are_read_updated_and_deleted(repo: ShadowRepo) -> None:
    c1 = repo.commit(EMPTY_TREE, "one")
    c2 = repo.commit(EMPTY_TREE, "two")
    for name in ("a", "b", "c"):
        repo.update_ref(f"refs/datmo/snapshots/{name}", c1)
    repo.run("pack-refs", "--all", "--prune")
    assert not (repo.gitdir / "refs/datmo/snapshots/a").exists()
    assert repo.read_ref("refs/datmo/snapshots/a") == c1
    assert repo.list_refs() == {f"refs/datmo/snapshots/{n}": c1 for n in "abc"}
    repo.update_ref("refs/datmo/snapshots/b", c2)  # a loose ref overrides the packed one
    assert repo.read_ref("refs/datmo/snapshots/b") == c2
    assert repo.list_refs()["refs/datmo/snapshots/b"] == c2
    repo.delete_ref("refs/datmo/snapshots/a")
    repo.delete_ref("refs/datmo/snapshots/b")
    assert repo.list_refs() == {"refs/datmo/snapshots/c": c1}
    assert b"snapshots/a" not in (repo.gitdir / "packed-refs").read_bytes()
    assert repo.fsck() == []


@pytest.mark.parametrize(
    "name",
    ["heads/x", "refs/datmo/a..b", "refs/datmo/x.lock", "refs/datmo/.hidden", "refs/datmo/a b",
     "refs/datmo/x/", "refs/datmo/a:b", "refs/datmo//x", "refs/datmo/x@{1}", "refs/../../config"],
)  # fmt: skip
def test_bad_ref_names_are_refused(repo: ShadowRepo, name: str) -> None:
    with pytest.raises(ValueError):
        repo.update_ref(name, EMPTY_TREE)


def test_refs_never_point_at_missing_objects_and_damage_is_reported(repo: ShadowRepo) -> None:
    with pytest.raises(CorruptStore, match="is missing"):
        repo.update_ref("refs/datmo/snapshots/x", "3" * 40)
    assert repo.read_ref("refs/datmo/snapshots/x") is None
    (repo.gitdir / "refs/datmo").mkdir(parents=True)
    (repo.gitdir / "refs/datmo/bad").write_text("not an id\n")
    with pytest.raises(CorruptStore, match=r"refs/datmo/bad .*datmo fsck"):
        repo.read_ref("refs/datmo/bad")
    with pytest.raises(CorruptStore):
        repo.list_refs()


def test_update_ref_makes_written_objects_durable_first(
    repo: ShadowRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    shas = [repo.write_blob(b"%d" % i) for i in range(3)]
    assert synced == []  # deferred: one burst per ref update, not one per object
    tree = repo.write_tree({f"f{i}": ("100644", s) for i, s in enumerate(shas)})
    repo.update_ref("refs/datmo/snapshots/x", repo.commit(tree, "x"))
    assert len(synced) >= 5 + 1  # 3 blobs, a tree and a commit, their folders, the ref
    synced.clear()
    repo.update_ref("refs/datmo/snapshots/y", tree)
    assert len(synced) <= 2  # nothing pending: only the ref file and its folder


# -- attributes and the user's own git ------------------------------------------------------

PROJECT = {
    ".gitattributes": b"*.bin filter=lfs diff=lfs merge=lfs -text\n*.txt text eol=crlf\n"
    b"*.c ident\n",
    "mixed.txt": b"windows\r\nunix\n",
    "unix.txt": b"one\ntwo\n",
    "crlf.dat": b"a\r\nb\r\n",
    "model.bin": b"weights of a model\n",
    "id.c": b"/* $Id$ */\n",
    "lf.py": b"x = 1\ny = 2\n",
}
# What a user's git could have configured: git-lfs (here one that shouts) and Windows line endings.
HOSTILE = (
    "filter.lfs.smudge=tr a-z A-Z",
    "filter.lfs.clean=tr A-Z a-z",
    "filter.lfs.required=true",
    "core.autocrlf=true",
    "core.eol=crlf",
)


def _snapshot_project(repo: ShadowRepo) -> str:
    for name, data in PROJECT.items():
        (repo.worktree / name).write_bytes(data)
    entries = {name: ("100644", repo.write_blob_file(repo.worktree / name)) for name in PROJECT}
    commit = repo.commit(repo.write_tree(entries), "project")
    repo.update_ref("refs/datmo/snapshots/p", commit)
    return commit


def test_stored_bytes_come_back_byte_for_byte_whatever_gitattributes_say(
    repo: ShadowRepo, tmp_path: Path
) -> None:
    commit = _snapshot_project(repo)
    stored = {
        p: repo.read_object(sha)[1]
        for p, (_, sha) in repo.read_tree(repo.read_commit_tree(commit)).items()
    }
    assert stored == PROJECT
    assert archive(repo, commit, *HOSTILE) == PROJECT
    elsewhere = tmp_path / "checkout"
    elsewhere.mkdir()
    other = ShadowRepo(repo.gitdir, elsewhere)
    other.run(*[a for kv in HOSTILE for a in ("-c", kv)], "checkout", "-f", commit, "--", ".")
    (repo.gitdir / "index").unlink()
    assert {p.name: p.read_bytes() for p in elsewhere.iterdir()} == PROJECT
    # The control: without info/attributes git would rewrite these files.
    (repo.gitdir / "info" / "attributes").unlink()
    changed = archive(repo, commit, *HOSTILE)
    assert changed["unix.txt"] == b"one\r\ntwo\r\n"
    assert changed["model.bin"] == b"WEIGHTS OF A MODEL\n"
    assert changed["lf.py"] == b"x = 1\r\ny = 2\r\n"
    assert changed["id.c"] != PROJECT["id.c"]
    repo.init()
    assert archive(repo, commit, *HOSTILE) == PROJECT


def _user_git(cwd: Path, *args: str) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
    }
    env |= {
        "GIT_AUTHOR_NAME": "u",
        "GIT_AUTHOR_EMAIL": "u@x",
        "GIT_COMMITTER_NAME": "u",
        "GIT_COMMITTER_EMAIL": "u@x",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def test_the_users_repository_and_settings_neither_leak_in_nor_get_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "code.py").write_bytes(b"print('hi')\r\n")
    _user_git(root, "init", "-q")
    _user_git(root, "add", "code.py")
    _user_git(root, "commit", "-q", "-m", "user's own")
    marker = tmp_path / "hook-ran"
    hook = f"#!/bin/sh\ntouch {marker}\nexit 1\n"
    for hooks in (root / ".git" / "hooks", tmp_path / "home" / "hooks"):
        hooks.mkdir(parents=True, exist_ok=True)
        for name in ("pre-commit", "post-checkout", "pre-auto-gc", "reference-transaction"):
            (hooks / name).write_text(hook)
            (hooks / name).chmod(0o755)
    home = tmp_path / "home"
    (home / "attributes").write_text("* text eol=crlf ident\n")
    (home / "ignore").write_text("*\n")
    settings = (
        "[core]\n\tautocrlf = true\n\tattributesFile = ~/attributes\n\texcludesFile = ~/ignore\n"
        f"\thooksPath = {home / 'hooks'}\n"
        '[filter "lfs"]\n\tsmudge = tr a-z A-Z\n\trequired = true\n'
        f"[init]\n\ttemplateDir = {home / 'template'}\n[gc]\n\tauto = 1\n"
    )
    (home / ".gitconfig").write_text(settings)
    (home / ".config" / "git").mkdir(parents=True)
    (home / ".config" / "git" / "config").write_text(settings)
    (home / ".config" / "git" / "attributes").write_text("* text eol=crlf ident\n")
    (home / "template" / "hooks").mkdir(parents=True)
    (home / "template" / "hooks" / "pre-commit").write_text(hook)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.delenv("GIT_CONFIG_NOSYSTEM", raising=False)
    monkeypatch.setenv("GIT_DIR", str(root / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(root))
    monkeypatch.setenv("GIT_INDEX_FILE", str(root / ".git" / "index"))
    monkeypatch.setenv("GIT_OBJECT_DIRECTORY", str(root / ".git" / "objects"))
    before = files_of(root / ".git")

    repo = ShadowRepo(root / ".datmo" / "git", root)
    repo.init()
    assert not (repo.gitdir / "hooks").exists()  # the user's init.templateDir was not used
    commit = _snapshot_project(repo)
    code = repo.write_blob_file(root / "code.py")
    assert repo.read_object(code) == ("blob", b"print('hi')\r\n")
    assert archive(repo, commit) == PROJECT
    assert out(repo, "rev-parse", "--git-dir").decode().strip() == str(repo.gitdir)
    assert repo.run("config", "--get", "filter.lfs.smudge", check=False).returncode == 1
    assert b"global" not in out(repo, "config", "--list", "--show-scope")
    repo.run("gc", "--quiet")  # packs refs too: hooks such as reference-transaction would fire
    assert repo.read_tree(repo.read_commit_tree(commit)).keys() == PROJECT.keys()
    repo.delete_ref("refs/datmo/snapshots/p")  # a packed ref: `git update-ref -d` runs
    assert repo.list_refs() == {}
    assert repo.fsck() == []

    assert files_of(root / ".git") == before
    assert not marker.exists()


def test_hooks_in_the_shadow_repository_never_run(repo: ShadowRepo, tmp_path: Path) -> None:
    marker = tmp_path / "hook-ran"
    (repo.gitdir / "hooks").mkdir()
    for name in ("reference-transaction", "pre-auto-gc", "post-checkout", "post-rewrite"):
        (repo.gitdir / "hooks" / name).write_text(f"#!/bin/sh\ntouch {marker}\n")
        (repo.gitdir / "hooks" / name).chmod(0o755)
    commit = _snapshot_project(repo)
    repo.run("gc", "--auto")
    repo.run("pack-refs", "--all")
    repo.delete_ref("refs/datmo/snapshots/p")  # packed: `git update-ref -d` runs
    other = ShadowRepo(repo.gitdir, tmp_path / "out")
    (tmp_path / "out").mkdir()
    other.run("checkout", "-f", commit, "--", ".")
    assert not marker.exists()


# -- ownership ----------------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown a folder to another uid")
def test_as_root_in_someone_elses_project_everything_stays_theirs(tmp_path: Path) -> None:
    root = tmp_path / "theirs"
    root.mkdir()
    (root / "train.py").write_text("fit()\n")
    for p in (root, root / "train.py"):
        os.chown(p, UID, GID)
    repo = ShadowRepo(root / ".datmo" / "git", root, Owner(UID, GID))
    repo.init()
    tree = repo.write_tree({"train.py": ("100644", repo.write_blob_file(root / "train.py"))})
    commit = repo.commit(tree, "theirs")
    repo.update_ref("refs/datmo/snapshots/t", commit)

    def not_theirs() -> list[str]:
        found = [root / ".datmo", *(root / ".datmo").rglob("*")]
        return [str(p) for p in found if (p.lstat().st_uid, p.lstat().st_gid) != (UID, GID)]

    assert not_theirs() == []
    repo.run("gc", "--quiet")  # git runs as root and writes packs: handed over afterwards
    assert list((repo.gitdir / "objects" / "pack").glob("*.pack"))
    assert not_theirs() == []
    assert repo.read_tree(repo.read_commit_tree(commit)) == {
        "train.py": ("100644", repo.blob_id(b"fit()\n"))
    }

    # Root without an owner still gets through git's ownership check (safe.directory) ...
    as_root = ShadowRepo(repo.gitdir, root)
    assert as_root.fsck() == []
    assert out(as_root, "cat-file", "-t", commit) == b"commit\n"
    # ... which this git really enforces, and which accepts the exact path run() passes.
    plain = ["git", "-C", str(repo.gitdir), "rev-parse", "--git-dir"]
    env = {"PATH": os.environ["PATH"], "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}
    refused = subprocess.run(plain, env=env, capture_output=True)
    assert refused.returncode != 0 and b"dubious ownership" in refused.stderr
    allowed = [plain[0], "-c", f"safe.directory={repo.gitdir}", *plain[1:]]
    assert subprocess.run(allowed, env=env, capture_output=True).returncode == 0


# -- reading back -------------------------------------------------------------------------


def test_reads_fall_back_to_git_once_gc_has_packed_objects(
    repo: ShadowRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    blobs = {
        f"d{i}/sub/f{j}.py": ("100644", repo.write_blob(b"%d-%d\n" % (i, j)))
        for i in range(5)
        for j in range(3)
    }
    blobs["top.txt"] = ("100644", repo.write_blob(b"top\n"))
    tree = repo.write_tree(blobs)
    commit = repo.commit(tree, "packed")
    repo.update_ref("refs/datmo/snapshots/p", commit)
    repo.run("gc", "--quiet")
    loose = [p for p in (repo.gitdir / "objects").glob("??/*")]
    assert all(p.parent.name + p.name not in {tree, commit} for p in loose)
    assert repo.has_object(commit) and repo.has_object(blobs["top.txt"][1])
    assert not repo.has_object("4" * 40)

    spawned: list[tuple[str, ...]] = []
    real_run = repo.run

    def run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        spawned.append(args)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(repo, "run", run)
    assert repo.read_commit_tree(commit) == tree
    assert repo.read_object(blobs["top.txt"][1]) == ("blob", b"top\n")
    spawned.clear()
    assert repo.read_tree(tree) == blobs
    assert len(spawned) == 3  # one `git cat-file --batch` per folder depth, not one per folder
    with pytest.raises(CorruptStore, match=r"4{40} .*missing.*datmo fsck"):
        repo.read_object("4" * 40)

    # Nothing is written again: the pack index is consulted before writing a loose object.
    before = sorted((repo.gitdir / "objects").glob("??/*"))
    spawned.clear()
    assert repo.write_tree(blobs) == tree
    assert repo.write_blob(b"top\n") == blobs["top.txt"][1]
    assert sorted((repo.gitdir / "objects").glob("??/*")) == before
    assert spawned == []


# -- damage -------------------------------------------------------------------------------


def _loose(repo: ShadowRepo, sha: str) -> Path:
    path = repo.gitdir / "objects" / sha[:2] / sha[2:]
    path.chmod(0o644)
    return path


def test_damaged_loose_objects_raise_corrupt_store(repo: ShadowRepo) -> None:
    garbage, truncated, swapped, retyped = (repo.write_blob(b"content %d\n" % i) for i in range(4))
    other = repo.write_blob(b"something else")
    _loose(repo, garbage).write_bytes(b"not zlib at all")
    good = _loose(repo, truncated).read_bytes()
    _loose(repo, truncated).write_bytes(good[: len(good) // 2])
    _loose(repo, swapped).write_bytes(
        (repo.gitdir / "objects" / other[:2] / other[2:]).read_bytes()
    )
    _loose(repo, retyped).write_bytes(zlib.compress(b"tree 10\0content 3\n"))
    for sha in (garbage, truncated, swapped, retyped):
        with pytest.raises(CorruptStore, match=f"{sha} .*datmo fsck"):
            repo.read_object(sha)
    problems = repo.fsck()
    assert problems and all(isinstance(line, str) for line in problems)
    assert any(garbage in line for line in problems)


def test_damaged_trees_commits_and_missing_objects(repo: ShadowRepo) -> None:
    body = b"100644 x\0short"  # an entry cut off inside its id
    sha = hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()
    path = repo.gitdir / "objects" / sha[:2] / sha[2:]
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(zlib.compress(b"tree %d\0" % len(body) + body))
    with pytest.raises(CorruptStore, match="damaged tree"):
        repo.read_tree(sha)
    blob = repo.write_blob(b"data")
    with pytest.raises(CorruptStore, match="not a tree"):
        repo.read_tree(blob)
    with pytest.raises(CorruptStore, match="not a valid commit"):
        repo.read_commit_tree(EMPTY_TREE)
    tree = repo.write_tree({"data": ("100644", blob)})
    repo.update_ref("refs/datmo/snapshots/x", repo.commit(tree, "x"))
    _loose(repo, blob).unlink()
    assert repo.read_tree(tree) == {"data": ("100644", blob)}  # trees do not read their blobs
    with pytest.raises(CorruptStore, match="missing"):
        repo.read_object(blob)
    assert any(blob in line and "missing" in line for line in repo.fsck())


# -- speed --------------------------------------------------------------------------------


def test_rewriting_an_unchanged_tree_of_2000_files_is_fast(repo: ShadowRepo) -> None:
    entries = {
        f"pkg{i // 20}/mod{i % 20}.py": ("100644", repo.blob_id(b"%d" % i)) for i in range(2000)
    }
    tree = repo.write_tree(entries)
    started = time.perf_counter()
    assert repo.write_tree(entries) == tree
    elapsed = time.perf_counter() - started
    assert elapsed < 0.25, f"write_tree of an unchanged tree took {elapsed * 1000:.1f} ms"


# -- packs: a batch past LOOSE_LIMIT objects ------------------------------------------------


def test_a_big_batch_goes_into_one_pack_that_git_reads_and_checks(repo: ShadowRepo) -> None:
    n = gitmod.LOOSE_LIMIT + 400
    entries = {f"d{i % 7}/f{i}.py": ("100644", repo.write_blob(b"x = %d\n" % i)) for i in range(n)}
    pack_dir = repo.gitdir / "objects" / "pack"
    names = [p.name for p in pack_dir.iterdir()]
    assert len(names) == 1 and names[0].startswith("tmp_pack_")  # not visible yet
    assert all(repo.has_object(sha) for _, sha in entries.values())  # pending ones count
    tree = repo.write_tree(entries)
    commit = repo.commit(tree, "many")
    repo.update_ref("refs/datmo/snapshots/many", commit)
    packs = sorted(p.name for p in pack_dir.iterdir())
    assert [p.rsplit(".", 1)[1] for p in packs] == ["idx", "pack"]  # the temp file is renamed
    loose = [p for p in (repo.gitdir / "objects").glob("??/*")]
    assert len(loose) <= gitmod.LOOSE_LIMIT + 1  # the empty tree from init
    idx = str(pack_dir / packs[0])
    verified = out(repo, "verify-pack", "-v", idx).decode()
    assert "non delta: 409 objects" in verified  # 400 blobs, 7 folders, the root, the commit
    assert repo.fsck() == []
    assert ls_tree(repo, tree) == entries
    assert out(repo, "cat-file", "-p", entries["d3/f10.py"][1]) == b"x = 10\n"
    # datmo's own reader finds packed objects too (through git), byte for byte.
    last = n - 1
    assert repo.read_object(entries[f"d{last % 7}/f{last}.py"][1]) == ("blob", b"x = %d\n" % last)


def test_reading_an_object_of_the_pack_being_written_finishes_the_pack(repo: ShadowRepo) -> None:
    shas = [repo.write_blob(b"%d" % i) for i in range(gitmod.LOOSE_LIMIT + 5)]
    assert repo.read_object(shas[-1]) == ("blob", b"%d" % (gitmod.LOOSE_LIMIT + 4))
    assert list((repo.gitdir / "objects" / "pack").glob("*.idx"))
    assert repo.object_files(shas[-1]) == sorted((repo.gitdir / "objects" / "pack").glob("*.idx"))


def test_a_writer_killed_before_its_pack_is_finished_leaves_nothing_visible(
    repo: ShadowRepo,
) -> None:
    pid = os.fork()
    if pid == 0:  # the child writes a pack's worth of objects and dies before sync
        try:
            for i in range(gitmod.LOOSE_LIMIT + 300):
                repo.write_blob(b"doomed %d" % i)
        finally:
            os.kill(os.getpid(), 9)
    os.waitpid(pid, 0)
    pack_dir = repo.gitdir / "objects" / "pack"
    assert not list(pack_dir.glob("*.idx")) and not list(pack_dir.glob("*.pack"))
    assert list(pack_dir.glob("tmp_pack_*"))  # garbage that git gc's prune removes
    fresh = ShadowRepo(repo.gitdir, repo.worktree)
    assert not fresh.has_object(fresh.blob_id(b"doomed %d" % (gitmod.LOOSE_LIMIT + 299)))
    assert fresh.fsck() == []
    fresh.run("gc", "--quiet", "--prune=now")
    assert not list(pack_dir.glob("tmp_pack_*"))


def test_abort_drops_an_unfinished_pack(repo: ShadowRepo) -> None:
    shas = [repo.write_blob(b"a%d" % i) for i in range(gitmod.LOOSE_LIMIT + 3)]
    repo.abort()
    assert list((repo.gitdir / "objects" / "pack").iterdir()) == []
    assert not repo.has_object(shas[-1]) and repo.has_object(shas[0])  # loose ones stay


def test_pack_index_large_offsets_use_the_eight_byte_table() -> None:
    from datmo.core.shadowgit import format as gitformat
    from datmo.core.shadowgit.pack import entry_header, index_bytes

    ids = [bytes([b]) * 20 for b in (3, 200, 7)]
    entries = {ids[0]: (12, 1), ids[1]: (5 << 31, 2), ids[2]: (1 << 31, 3)}
    idx = index_bytes(entries, b"\x01" * 20)
    assert gitformat.is_pack_index(idx)
    assert all(gitformat.pack_index_has(idx, d) for d in ids)
    assert not gitformat.pack_index_has(idx, b"\x04" * 20)
    n = 3
    offsets = idx[8 + 1024 + 24 * n : 8 + 1024 + 28 * n]
    small = [int.from_bytes(offsets[4 * i : 4 * i + 4], "big") for i in range(n)]
    assert small[0] == 12 and small[1] >> 31 == 1 and small[2] >> 31 == 1  # sorted: 3, 7, 200
    large = idx[8 + 1024 + 28 * n : 8 + 1024 + 28 * n + 16]
    assert int.from_bytes(large[8 * (small[1] & 0x7FFFFFFF) :][:8], "big") == 1 << 31
    assert int.from_bytes(large[8 * (small[2] & 0x7FFFFFFF) :][:8], "big") == 5 << 31
    assert hashlib.sha1(idx[:-20]).digest() == idx[-20:]
    # The size varint: 4 bits in the first byte, then 7 per byte.
    assert entry_header(b"blob", 15) == bytes([0x3F])
    assert entry_header(b"blob", 16) == bytes([0xB0, 0x01])
    # 4 + 7 + 7 bits, then 1 << 2
    assert entry_header(b"tree", 1 << 20) == bytes([0xA0, 0x80, 0x80, 0x04])
