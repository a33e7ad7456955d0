"""Facts read from the file system with nothing but `os`: what the start-up path needs.

A re-snapshot of an unchanged project is answered before any of datmo's records or
the usual standard-library stack (typing, dataclasses, pathlib, json) is loaded
(see tree/unchanged.py). The checks it shares with the rest of datmo live here, so
both paths judge by the same rules: the project root search, lstat signatures,
the racy-timestamp rule, virtual-environment detection, the fingerprint of the
installed packages, and a built-in template's stamp. Keep this module's imports
to `os`, `stat` and `sys`.
"""

from __future__ import annotations

import os
import stat
import sys

DATMO_DIR = ".datmo"
RACY_NS = 20_000_000  # 20 ms: wider than the coarsest kernel timestamp tick we expect
# A whole-second mtime may come from a filesystem that keeps only seconds (ext3, FAT
# keeps two, some network filesystems): there, a write within the same second or two
# leaves it unchanged, so such a time is trusted only once it is that much older.
COARSE_NS = 2_000_000_000
SECOND_NS = 1_000_000_000
BOOT_ID = "/proc/sys/kernel/random/boot_id"

# mode, size, mtime_ns, ctime_ns, inode: what a rewrite, rename, chmod or replacement moves
Signature = tuple[int, int, int, int, int]


def is_racy(time_ns: int, since_ns: int) -> bool:
    """Whether a change after `since_ns` could have left `time_ns` (an mtime) as it is."""
    return time_ns >= since_ns - RACY_NS or (
        time_ns >= since_ns - COARSE_NS and time_ns % SECOND_NS == 0
    )


def find_root(start: str) -> str | None:
    """The folder at or above `start` (absolute) holding `.datmo`, as git finds `.git`."""
    here = os.path.abspath(start)
    while True:
        if os.path.isfile(os.path.join(here, DATMO_DIR, "project.json")):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def signature(path: str) -> Signature | None:
    """The path's lstat signature; None when nothing is there. Other errors raise."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def is_venv(fd: int, names: list[str]) -> bool:
    """Whether the open folder holding `names` is a virtual environment (venv, conda)."""
    if "pyvenv.cfg" in names:
        return True
    if "conda-meta" not in names:
        return False
    try:
        return stat.S_ISDIR(os.lstat("conda-meta", dir_fd=fd).st_mode)
    except OSError:
        return False


def interpreter() -> str:
    # The file, not the name it was started by: `datmo` (a script whose first line says
    # python3) and `python -m datmo` in one virtual environment are the same Python.
    return os.path.realpath(sys.executable)


def package_folders(root: str | None) -> list[str]:
    """What stands in for 'the installed packages are the same': sys.path folder mtimes.

    Installing or removing a distribution adds or removes a *.dist-info folder,
    which changes its parent's mtime. Folders inside `root` other than
    site-/dist-packages are skipped: they are project code, not installs.
    """
    parts = [interpreter(), sys.version]
    root_s = os.path.abspath(root) if root is not None else None
    # sys.path[0] is the running script's folder or the cwd (console script, -m, -c):
    # never where packages are installed, and it differs between ways of starting datmo.
    for entry in sys.path[1:]:
        path = os.path.abspath(entry or os.curdir)
        inside = root_s is not None and (path == root_s or path.startswith(root_s + os.sep))
        if inside and os.path.basename(path) not in ("site-packages", "dist-packages"):
            continue
        try:
            parts.append(f"{path}\0{os.stat(path).st_mtime_ns}")
        except OSError:
            parts.append(f"{path}\0-")  # appearing later must change the fingerprint
    return parts


def machine() -> list[str]:
    """What changes with a reboot or a move to another machine sharing the project
    folder (GPUs, the kernel): boot_id is random per boot, so it says so without
    naming the host."""
    try:
        with open(BOOT_ID, encoding="ascii") as f:
            boot = f.read().strip()
    except (OSError, ValueError):
        boot = ""
    u = os.uname()  # not platform.uname(): indexing it runs `uname -p` in a subprocess
    return [interpreter(), boot, u.release, u.version, u.machine]


def folder_stamp(top: str, relative_to: str) -> str:
    """Sizes and modification times of the files under `top`, in one word (paths
    relative to `relative_to`): what a built-in template's cached id is keyed by."""
    parts = []
    for folder, dirs, names in os.walk(top):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for n in sorted(names):
            st = os.stat(os.path.join(folder, n))
            rel = os.path.relpath(os.path.join(folder, n), relative_to)
            parts.append(f"{rel}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts).replace(" ", "%20") or "-"
