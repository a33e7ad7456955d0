"""Run as root in someone else's project: everything datmo creates belongs to them."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from conftest import UNUSED_GID, UNUSED_UID

MiB = 1 << 20


def write_as_owner(root: Path, files: dict[str, bytes]) -> None:
    """Write files the way the project's owner would have: owned by them, folders too."""
    for rel, data in files.items():
        path = root / rel
        folder = path.parent
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for d in reversed(missing):
            d.mkdir()
            os.chown(d, UNUSED_UID, UNUSED_GID)
        path.write_bytes(data)
        os.chown(path, UNUSED_UID, UNUSED_GID)


def foreign_owned(root: Path) -> list[str]:
    """Every path under root (the root, .datmo and all, links not followed) not owned
    by the project's owner."""
    bad = []
    for top, dirs, files in os.walk(root):
        for name in [".", *dirs, *files]:
            full = os.path.join(top, name)
            st = os.lstat(full)
            if (st.st_uid, st.st_gid) != (UNUSED_UID, UNUSED_GID):
                bad.append(f"{os.path.relpath(full, root)} {st.st_uid}:{st.st_gid}")
    return sorted(bad)


def ok(cli: Any, *args: str) -> str:
    r = cli(*args)
    assert r.exit_code == 0, r.output
    return r.stdout.strip()


def test_everything_datmo_creates_belongs_to_the_projects_owner(foreign_project, cli):
    root = foreign_project
    write_as_owner(
        root,
        {
            "train.py": b"print('v1')\n",
            "src/model/net.py": b"layers = 2\n",
            "weights/big.bin": os.urandom(2 * MiB),
            "out/run.log": b"log\n",
        },
    )
    os.symlink("train.py", root / "alias.py")
    os.chown(root / "alias.py", UNUSED_UID, UNUSED_GID, follow_symlinks=False)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)  # their own repository
    for top, dirs, files in os.walk(root / ".git"):
        for name in [".", *dirs, *files]:
            os.chown(os.path.join(top, name), UNUSED_UID, UNUSED_GID, follow_symlinks=False)
    ok(cli, "init", "--name", "theirs")
    assert (root / ".gitignore").read_text() == ".datmo/\n"
    assert foreign_owned(root) == []

    first = ok(cli, "snapshot", "create", "-m", "one", "-c", "lr=0.1")
    assert foreign_owned(root) == []

    write_as_owner(
        root,
        {
            "train.py": b"print('v2')\n",
            "weights/big.bin": os.urandom(2 * MiB),
            "extra/deeper/notes.txt": b"n\n",
        },
    )
    second = ok(cli, "snapshot", "create", "-m", "two")
    assert foreign_owned(root) == []
    for _ in range(3):  # unchanged: its answer is kept, once no time is too new to trust
        time.sleep(0.06)
        assert ok(cli, "snapshot", "create", "-m", "two") == second
    assert (root / ".datmo" / "cache" / "unchanged").is_file()
    assert foreign_owned(root) == []

    # going back to the first makes folders (src/model), a link and files, removes extra/
    for rel in ("src/model/net.py", "src/model", "src", "alias.py"):
        p = root / rel
        (p.rmdir if p.is_dir() and not p.is_symlink() else p.unlink)()
    ok(cli, "snapshot", "create", "-m", "three, without src")
    ok(cli, "snapshot", "checkout", first)
    assert (root / "src" / "model" / "net.py").read_bytes() == b"layers = 2\n"
    assert not (root / "extra").exists()
    assert os.readlink(root / "alias.py") == "train.py"
    assert foreign_owned(root) == []

    # dirty work saved by --force goes into a hidden snapshot, still theirs
    write_as_owner(root, {"train.py": b"print('dirty')\n", "new/dir/file.txt": b"x\n"})
    r = cli("snapshot", "checkout", second, "--force")
    assert r.exit_code == 0, r.output
    assert (root / "train.py").read_bytes() == b"print('v2')\n"
    assert foreign_owned(root) == []

    ok(cli, "status")
    ok(cli, "snapshot", "ls")
    assert foreign_owned(root) == []

    # the shadow repository is sound for plain git too
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_CONFIG_GLOBAL"] = "/dev/null"
    gitdir = root / ".datmo" / "git"
    git = ["git", "-c", f"safe.directory={gitdir.resolve()}", "--git-dir", str(gitdir)]
    fsck = subprocess.run(
        [*git, "fsck"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert fsck.returncode == 0, fsck.stderr
    refs = subprocess.run(
        [*git, "for-each-ref", "--format=%(refname)", "refs/datmo/snapshots/"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert f"refs/datmo/snapshots/{first}" in refs and f"refs/datmo/snapshots/{second}" in refs
