"""The project walker: what is left out (and why), and what is code or files."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from datmo.core.tree import scan as scan_module
from datmo.core.tree.scan import CODE, FILE, OPTION_REASON, ScanResult, Skipped, scan
from datmo.errors import NotFound

Tree = Callable[[Path, dict[str, Any]], None]


def categories(result: ScanResult) -> dict[str, str]:
    return {e.path: e.category for e in result.entries}


def skips(result: ScanResult) -> dict[str, str]:
    return {s.path: s.reason for s in result.skipped}


def test_default_exclusions_each_with_its_reason(tmp_path: Path, tree: Tree) -> None:
    tree(
        tmp_path,
        {
            "main.py": "print(1)\n",
            ".git": {"HEAD": "ref: refs/heads/main\n", "objects": {"ab": "x"}},
            ".datmo": {"objects": {"x": "y"}},
            "sub": {".git": "gitdir: ../.git/modules/sub\n", "m.py": "", ".datmo": {"k.txt": ""}},
            "pkg": {"__pycache__": {"m.cpython-311.pyc": b"\0"}, "m.py": ""},
            "nb": {".ipynb_checkpoints": {"a-checkpoint.ipynb": "{}"}},
            "web": {"node_modules": {"left-pad": {"index.js": ""}}},
            "myenv": {"pyvenv.cfg": "home = /usr/bin\n", "lib": {"site.py": ""}},
            "conda": {"conda-meta": {"history": ""}, "bin": {"python": ""}},
            ".env": "TOKEN=1\n",
            ".env.local": "TOKEN=2\n",
            "config": {".env.production": "TOKEN=3\n"},
            ".env.example": "TOKEN=\n",
            "keys": {"server.pem": "-----BEGIN", "id_rsa": "k", "id_ed25519.pub": "k"},
            ".netrc": "machine x\n",
        },
    )
    os.mkfifo(tmp_path / "pipe")
    result = scan(tmp_path)
    assert skips(result) == {
        ".datmo": "datmo store",
        ".env": "may hold secrets",
        ".env.local": "may hold secrets",
        ".git": "version control",
        ".netrc": "may hold secrets",
        "conda": "virtual environment",
        "config/.env.production": "may hold secrets",
        "keys/id_ed25519.pub": "may hold secrets",
        "keys/id_rsa": "may hold secrets",
        "keys/server.pem": "may hold secrets",
        "myenv": "virtual environment",
        "nb/.ipynb_checkpoints": "cache folder",
        "pipe": "not a regular file",
        "pkg/__pycache__": "cache folder",
        "sub/.git": "version control",
        "web/node_modules": "cache folder",
    }
    # Only the root's .datmo is the store; a template for .env is shared on purpose.
    assert categories(result) == {
        ".env.example": CODE,
        "main.py": CODE,
        "pkg/m.py": CODE,
        "sub/.datmo/k.txt": CODE,
        "sub/m.py": CODE,
    }


def test_a_folder_is_a_venv_by_content_not_by_name(tmp_path: Path, tree: Tree) -> None:
    # `env/` is a common package name; only pyvenv.cfg or conda-meta/ mark a venv.
    tree(tmp_path, {"env": {"__init__.py": ""}, "venv": {"bin": {"activate": ""}}})
    tree(tmp_path, {"conda-meta": "a file, not the folder conda makes\n"})
    (tmp_path / "pyvenv.cfg").write_text("")  # the project root itself is never left out
    result = scan(tmp_path)
    assert sorted(categories(result)) == [
        "conda-meta",
        "env/__init__.py",
        "pyvenv.cfg",
        "venv/bin/activate",
    ]
    assert result.skipped == []


def test_datmoignore_adds_exclusions_and_can_ask_for_a_default(tmp_path: Path, tree: Tree) -> None:
    tree(
        tmp_path,
        {
            ".datmoignore": "# big\ndata/raw/\n*.ckpt\n!.env\n!myenv/\nlogs/\n!logs/keep.txt\n",
            "data": {"raw": {"a.csv": ""}, "clean.csv": ""},
            "model.ckpt": "",
            ".env": "A=1\n",
            "myenv": {"pyvenv.cfg": "", "lib": {"x.py": "", "__pycache__": {"x.pyc": ""}}},
            "logs": {"keep.txt": "", "run.log": ""},
        },
    )
    result = scan(tmp_path)
    assert skips(result) == {
        "data/raw": ".datmoignore",
        "logs": ".datmoignore",  # a file inside a left-out folder cannot come back
        "model.ckpt": ".datmoignore",
        "myenv/lib/__pycache__": "cache folder",
    }
    assert sorted(categories(result)) == [
        ".datmoignore",
        ".env",
        "data/clean.csv",
        "myenv/lib/x.py",
        "myenv/pyvenv.cfg",
    ]


def test_extra_rules_come_after_datmoignore(tmp_path: Path, tree: Tree) -> None:
    tree(tmp_path, {".datmoignore": "*.log\n", "a.log": "", "b.txt": "", ".netrc": ""})
    result = scan(tmp_path, extra_rules="!a.log\nb.txt\n!.netrc\n")
    assert skips(result) == {"b.txt": OPTION_REASON}
    assert sorted(categories(result)) == [".datmoignore", ".netrc", "a.log"]


def test_nested_repository_is_captured_by_content(tmp_path: Path, tree: Tree) -> None:
    tree(
        tmp_path,
        {
            "vendor": {
                "lib": {
                    ".git": {"HEAD": "x", "config": "", "objects": {"pack": {"p.pack": b"\0"}}},
                    ".gitignore": "build/\n",
                    "src.py": "",
                    "build": {"out.o": b"\0"},
                }
            }
        },
    )
    result = scan(tmp_path)
    assert skips(result) == {"vendor/lib/.git": "version control"}
    assert categories(result) == {
        "vendor/lib/.gitignore": CODE,
        "vendor/lib/build/out.o": FILE,
        "vendor/lib/src.py": CODE,
    }


def _git_files(root: Path, *args: str) -> set[str]:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
    out = subprocess.run(
        ["git", "-c", "core.excludesFile=/dev/null", "ls-files", "-z", "--others", *args],
        cwd=root,
        env=env,
        capture_output=True,
        check=True,
    ).stdout
    return {p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p}


def test_code_is_exactly_what_git_would_track(tmp_path: Path, tree: Tree) -> None:
    tree(
        tmp_path,
        {
            ".gitignore": "*.log\n/build/\ndata/\n!data/keep.txt\n*.tmp\n!*.tmp/\n",
            "app.py": "",
            "run.log": "",
            "build": {"x.o": ""},
            "src": {
                "build": {"y.o": ""},
                ".gitignore": "!*.log\n/local.cfg\n*.bak\n",
                "trace.log": "",
                "local.cfg": "",
                "deep": {"local.cfg": "", "x.bak": "", ".gitignore": "*.py\n!keep.py\n"},
            },
            "data": {"keep.txt": "", "big.bin": "", ".gitignore": "!*\n"},
            "cache.tmp": {"inside.txt": ""},
            "plain.tmp": "",
            "linked": {},
        },
    )
    tree(tmp_path / "src" / "deep", {"gone.py": "", "keep.py": ""})
    # git does not read a .gitignore through a symlink; neither do we.
    os.symlink("../src/.gitignore", tmp_path / "linked" / ".gitignore")
    # A link to a folder is not a folder to git: 'linkdir/' does not match it.
    os.symlink("src", tmp_path / "linkdir")
    (tmp_path / ".gitignore").write_text((tmp_path / ".gitignore").read_text() + "linkdir/\n")
    (tmp_path / "linked" / "note.bak").write_text("")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / ".git" / "info" / "exclude").unlink(missing_ok=True)

    result = scan(tmp_path)
    cats = categories(result)
    assert {p for p, c in cats.items() if c == CODE} == _git_files(tmp_path, "--exclude-standard")
    ignored = _git_files(tmp_path, "--ignored", "--exclude-standard")
    assert {p for p, c in cats.items() if c == FILE} == ignored
    assert "data/keep.txt" in ignored  # a gitignored folder's files are all FILE
    assert cats["linkdir"] == CODE


def test_gitignore_inside_an_ignored_folder_is_not_read(tmp_path: Path, tree: Tree) -> None:
    tree(tmp_path, {".gitignore": "out/\n", "out": {".gitignore": "!*\n", "x.txt": ""}})
    assert categories(scan(tmp_path)) == {
        ".gitignore": CODE,
        "out/.gitignore": FILE,
        "out/x.txt": FILE,
    }


def test_files_above_the_threshold_are_files(tmp_path: Path, tree: Tree) -> None:
    tree(tmp_path, {"small.py": "x" * 10, "big.py": "x" * 11, "weights.bin": b"\0" * 11})
    assert categories(scan(tmp_path, threshold=10)) == {
        "big.py": FILE,
        "small.py": CODE,
        "weights.bin": FILE,
    }
    assert set(categories(scan(tmp_path)).values()) == {CODE}  # default: 1 MiB


def test_symlinks_are_entries_and_never_followed(tmp_path: Path, tree: Tree) -> None:
    outside = tmp_path / "outside"
    tree(outside, {"huge.bin": b"\0" * 10_000, "dir": {"secret.txt": "s"}})
    root = tmp_path / "proj"
    tree(root, {"real": {"a.py": ""}, ".gitignore": "ignored-link\n"})
    os.symlink(outside / "huge.bin", root / "to-file")
    os.symlink(outside / "dir", root / "to-dir")
    os.symlink("real", root / "to-inside")
    os.symlink("nowhere", root / "dangling")
    os.symlink("real/a.py", root / "ignored-link")

    result = scan(root, threshold=1000)
    assert categories(result) == {
        ".gitignore": CODE,
        "dangling": CODE,
        "ignored-link": FILE,
        "real/a.py": CODE,
        "to-dir": CODE,
        "to-file": CODE,  # the link is small; its target's size does not matter
        "to-inside": CODE,
    }
    by_path = {e.path: e for e in result.entries}
    link = by_path["to-file"]
    assert stat.S_ISLNK(link.st.st_mode)
    assert link.st.st_size == len(os.fsencode(outside / "huge.bin"))


def test_sockets_and_fifos_are_skipped(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    os.mkfifo(tmp_path / ".gitignore")  # must not hang the walk when it reads rules
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "sock"))
        result = scan(tmp_path)
    finally:
        sock.close()
    assert result.entries == []
    assert result.skipped == [
        Skipped(".gitignore", "not a regular file"),
        Skipped("fifo", "not a regular file"),
        Skipped("sock", "not a regular file"),
    ]


def test_entries_are_sorted_by_full_path(tmp_path: Path, tree: Tree) -> None:
    # '/' sorts after ' ', '-' and '.', so a folder's files interleave with
    # its siblings: "a b" < "a-b" < "a.b" < "a/x" < "a0" < "ab".
    tree(
        tmp_path,
        {
            "a": {"x": "", "!": "", "y": {"z": ""}},
            "a b": "",
            "a-b": {"c": ""},
            "a.b": "",
            "a0": "",
            "ab": "",
            "Z": "",
            "é": "",
            "__pycache__": {"x.pyc": ""},
            ".git": {},
        },
    )
    result = scan(tmp_path)
    paths = [e.path for e in result.entries]
    assert paths == sorted(paths)
    assert len(paths) == 10
    assert [s.path for s in result.skipped] == [".git", "__pycache__"]


def test_paths_with_spaces_and_unicode(tmp_path: Path, tree: Tree) -> None:
    tree(
        tmp_path,
        {
            ".gitignore": "*.ü\nrésumé/\n",
            "my data": {" café .txt": "", "x.ü": ""},
            "résumé": {"a b.pdf": ""},
            "日本": {"名前.py": ""},
        },
    )
    assert categories(scan(tmp_path)) == {
        ".gitignore": CODE,
        "my data/ café .txt": CODE,
        "my data/x.ü": FILE,
        "résumé/a b.pdf": FILE,
        "日本/名前.py": CODE,
    }


def test_empty_folders_are_not_entries(tmp_path: Path) -> None:
    (tmp_path / "empty" / "deeper").mkdir(parents=True)
    result = scan(tmp_path)
    assert (result.entries, result.skipped) == ([], [])


def test_the_root_may_be_a_symlink(tmp_path: Path, tree: Tree) -> None:
    tree(tmp_path / "real", {"a.py": "", "sub": {"b.py": ""}})
    os.symlink(tmp_path / "real", tmp_path / "link")
    assert sorted(categories(scan(tmp_path / "link"))) == ["a.py", "sub/b.py"]


def test_missing_root_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        scan(tmp_path / "nope")


def test_an_unreadable_folder_is_reported_and_the_walk_goes_on(
    tmp_path: Path, tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests run as root, which reads everything, so refuse one folder by hand.
    tree(tmp_path, {"locked": {"a.py": ""}, "open": {"b.py": ""}})
    real_open = os.open
    locked = str(tmp_path / "locked")

    def fake_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if path == locked:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(scan_module.os, "open", fake_open)
    result = scan(tmp_path)
    assert categories(result) == {"open/b.py": CODE}
    assert result.skipped == [Skipped("locked", "permission denied")]
