"""What a local task runs with (executor/pyprobe.py): probed beside the task, kept while
the interpreter and its package folders are unchanged, probed again when they change."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from datmo.core.executor import pyprobe


def fake_python(bin_dir: Path, site: Path, log: Path) -> None:
    """A `python3` that notes each time it is run, then runs this interpreter with `site`
    on its path (so a package can be added there)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "python3"
    script.write_text(
        f'#!/bin/sh\necho run >> "{log}"\n'
        f'PYTHONPATH="{site}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" "$@"\n'
    )
    script.chmod(0o755)


def probe(env: dict[str, str], cache: Path, cwd: Path) -> dict[str, object]:
    p = pyprobe.Probe(env, cwd, cache, None)
    return p.result()


def aged(folder: Path) -> None:
    """Back-date a folder's mtime past the racy window, as if it changed a while ago."""
    old = time.time() - 10
    os.utime(folder, (old, old))


@pytest.fixture
def setup(tmp_path: Path) -> tuple[dict[str, str], Path, Path, Path]:
    site, log, cache = tmp_path / "site", tmp_path / "runs.log", tmp_path / "cache"
    site.mkdir()
    aged(site)
    fake_python(tmp_path / "bin", site, log)
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    return env, site, log, cache


def runs_of(log: Path) -> int:
    return len(log.read_text().split()) if log.exists() else 0


def test_a_kept_answer_is_used_while_nothing_changed(
    setup: tuple[dict[str, str], Path, Path, Path], tmp_path: Path
) -> None:
    env, site, log, cache = setup
    first = probe(env, cache, tmp_path)
    assert first["python"] == sys.version.split()[0] and runs_of(log) == 1
    assert (cache / pyprobe.NAME).is_file()
    again = probe(env, cache, tmp_path)
    assert again == first and runs_of(log) == 1  # no python started

    # A package installed into a folder on its path: probed again, and it shows.
    dist = site / "fakepkg-1.2.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.2\n")
    aged(site)
    third = probe(env, cache, tmp_path)
    assert runs_of(log) == 2 and "fakepkg==1.2" in third["packages"]  # type: ignore[operator]


def test_another_interpreter_or_path_variable_is_another_answer(
    setup: tuple[dict[str, str], Path, Path, Path], tmp_path: Path
) -> None:
    env, _, log, cache = setup
    probe(env, cache, tmp_path)
    probe({**env, "PYTHONPATH": str(tmp_path)}, cache, tmp_path)
    assert runs_of(log) == 2
    probe(env, cache, tmp_path)
    assert runs_of(log) == 2  # both kept


def test_a_folder_changed_just_now_is_not_trusted(
    setup: tuple[dict[str, str], Path, Path, Path], tmp_path: Path
) -> None:
    env, site, log, cache = setup
    os.utime(site)  # changed this very moment: an install may still be under way
    probe(env, cache, tmp_path)
    probe(env, cache, tmp_path)
    assert runs_of(log) == 2


def test_a_damaged_cache_means_a_new_probe(
    setup: tuple[dict[str, str], Path, Path, Path], tmp_path: Path
) -> None:
    env, _, log, cache = setup
    probe(env, cache, tmp_path)
    (cache / pyprobe.NAME).write_bytes(b"\0garbage")
    assert probe(env, cache, tmp_path)["python"] == sys.version.split()[0]
    assert runs_of(log) == 2


def test_no_python3_on_path_says_so(tmp_path: Path) -> None:
    facts = probe({"PATH": str(tmp_path)}, tmp_path / "cache", tmp_path)
    assert facts["python"] is None
