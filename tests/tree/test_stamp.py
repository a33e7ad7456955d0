"""The tree stamp: an unchanged project is answered from it, and no change slips past it.

Every change below is checked twice: the stamp must stop vouching for the tree
(holds() is False, in one process and split over several), and the capture that
follows must equal a capture made with no stamp at all (the oracle).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import write_tree

from datmo.core.controller.project import open_project
from datmo.core.tree import capture
from datmo.core.tree import scan as scan_module
from datmo.core.tree import stamp as treestamp
from datmo.core.tree.stamp import TreeStamp, stamp_key
from datmo.core.util import probe

BASE: dict[str, Any] = {
    "train.py": "import os\nprint('train')\n",
    "README.md": "# project\n",
    ".gitignore": "logs/\n*.tmp\n",
    ".datmoignore": "scratch/\n",
    "src": {"model.py": "x = 1\n", "util.py": "y = 2\n", "deep": {"a.txt": "a\n"}},
    "data": {"weights.bin": b"\0" * (2 << 20), "small.csv": "a,b\n1,2\n"},
    "logs": {"run.log": "started\n"},
    "scratch": {"tmp.txt": "ignored\n"},
    "node_modules": {"x.js": "1\n"},
    ".env": "SECRET=1\n",
    "venv": {"pyvenv.cfg": "home = /usr\n", "lib": {"site.py": "z = 3\n"}},
    "link.py": ("link", "train.py"),
}


def _write(root: Path, tree: dict[str, Any]) -> None:
    for name, content in tree.items():
        if isinstance(content, tuple):
            (root / name).symlink_to(content[1])
        elif isinstance(content, dict):
            (root / name).mkdir(parents=True, exist_ok=True)
            _write(root / name, content)
        else:
            write_tree(root, {name: content})


def _age() -> None:
    """Let every write fall out of the racy window (a stamp distrusts newer times)."""
    time.sleep(2 * probe.RACY_NS / 1e9)


def _outcome(c: capture.Captured) -> tuple[Any, ...]:
    return (c.code_id, c.files_id, c.code_count, c.file_count, c.total_bytes, c.skipped)


def _stamp(root: Path) -> TreeStamp | None:
    ctx = open_project(root)
    return TreeStamp.load(ctx.store.path("cache", "treestamp"), stamp_key(ctx.info.file_threshold))


@pytest.fixture(params=[1, 3], ids=["one process", "three processes"])
def workers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    n: int = request.param
    monkeypatch.setattr(treestamp, "_workers", lambda names: n)
    return n


@pytest.fixture
def stamped(project: Path, workers: int) -> Iterator[Path]:
    """A project captured once, with a stamp that holds."""
    _write(project, BASE)
    _age()
    capture.capture_tree(open_project(project), [])
    stamp = _stamp(project)
    assert stamp is not None and stamp.holds(str(project))
    yield project


def _no_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*a: object, **k: object) -> None:
        raise AssertionError("the tree was walked in full")

    monkeypatch.setattr(scan_module, "scan", fail)


def test_unchanged_tree_is_answered_from_the_stamp(
    stamped: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = open_project(stamped)
    before = capture.capture_tree(ctx, [])  # the fixture's capture left this stamp
    (stamped / "README.md").read_bytes()  # reading (atime) changes nothing
    _no_scan(monkeypatch)
    again = capture.capture_tree(ctx, [])
    assert _outcome(again) == _outcome(before)
    assert (again.requirements_id, again.platform) == (before.requirements_id, before.platform)


def _set_mtime_back(path: Path, st: os.stat_result) -> None:
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _same_size_rewrite(root: Path) -> None:
    path = root / "src" / "model.py"
    st = path.stat()
    path.write_text("x = 9\n")
    _set_mtime_back(path, st)  # size and mtime as before: only ctime tells


def _replace_rule_folder_with_file(root: Path) -> None:
    for p in (root / "node_modules").iterdir():
        p.unlink()
    (root / "node_modules").rmdir()
    (root / "node_modules").write_text("now a file: captured as code\n")


def _venv_loses_its_marker(root: Path) -> None:
    (root / "venv" / "pyvenv.cfg").unlink()


def _folder_becomes_a_venv(root: Path) -> None:
    (root / "src" / "pyvenv.cfg").write_text("home = /usr\n")


CHANGES: dict[str, Callable[[Path], object]] = {
    "edit": lambda r: (r / "train.py").write_text("print('changed')\n"),
    "same size and mtime": _same_size_rewrite,
    "new file": lambda r: (r / "src" / "new.py").write_text("n = 1\n"),
    "new file deep": lambda r: write_tree(r, {"src/deep/er/b.txt": "b\n"}),
    "delete": lambda r: (r / "src" / "util.py").unlink(),
    "rename": lambda r: (r / "src" / "util.py").rename(r / "src" / "util2.py"),
    "chmod +x": lambda r: (r / "train.py").chmod(0o755),
    "file to symlink": lambda r: ((r / "README.md").unlink(), (r / "README.md").symlink_to("x")),
    "retarget a symlink": lambda r: ((r / "link.py").unlink(), (r / "link.py").symlink_to("y")),
    "gitignore edit": lambda r: (r / ".gitignore").write_text("logs/\n*.tmp\nsrc/\n"),
    "datmoignore edit": lambda r: (r / ".datmoignore").write_text(""),
    "grows past the threshold": lambda r: (r / "data" / "small.csv").write_bytes(b"1" * (2 << 20)),
    "left-out folder becomes a file": _replace_rule_folder_with_file,
    "virtual environment no more": _venv_loses_its_marker,
    "folder becomes a virtual environment": _folder_becomes_a_venv,
    "weights rewritten in place": lambda r: (r / "data" / "weights.bin").write_bytes(
        b"\1" * (2 << 20)
    ),
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_every_change_is_seen(stamped: Path, change: Callable[[Path], object]) -> None:
    stamp = _stamp(stamped)
    assert stamp is not None
    change(stamped)
    assert not stamp.holds(str(stamped))
    ctx = open_project(stamped)
    after = capture.capture_tree(ctx, [])
    (stamped / ".datmo" / "cache" / "treestamp").unlink(missing_ok=True)  # racy: likely none
    oracle = capture.capture_tree(ctx, [])
    assert _outcome(after) == _outcome(oracle)


IRRELEVANT: dict[str, Callable[[Path], object]] = {
    "inside a left-out folder": lambda r: (r / "scratch" / "tmp.txt").write_text("other\n"),
    "a left-out file": lambda r: (r / ".env").write_text("SECRET=2\n"),
    "inside a virtual environment": lambda r: (r / "venv" / "lib" / "site.py").write_text("q\n"),
    "inside node_modules": lambda r: (r / "node_modules" / "y.js").write_text("2\n"),
}


@pytest.mark.parametrize("change", IRRELEVANT.values(), ids=IRRELEVANT.keys())
def test_what_a_snapshot_leaves_out_does_not_count(
    stamped: Path, change: Callable[[Path], object]
) -> None:
    stamp = _stamp(stamped)
    assert stamp is not None
    change(stamped)
    assert stamp.holds(str(stamped))


def test_no_stamp_while_a_file_is_too_new(project: Path) -> None:
    _write(project, BASE)
    _age()
    (project / "train.py").write_text("print('just now')\n")
    capture.capture_tree(open_project(project), [])
    assert _stamp(project) is None  # racy: a write in this very tick could follow unseen
    _age()
    capture.capture_tree(open_project(project), [])
    assert _stamp(project) is not None


def test_whole_second_times_count_as_racy_for_longer(project: Path) -> None:
    # A filesystem that keeps only seconds: a write later in the same second is unseen.
    _write(project, BASE)
    second = (time.time_ns() // probe.SECOND_NS) * probe.SECOND_NS
    os.utime(project / "train.py", ns=(second, second))
    _age()
    capture.capture_tree(open_project(project), [])
    assert _stamp(project) is None
    os.utime(project / "train.py", ns=(second - 3 * probe.SECOND_NS,) * 2)
    _age()
    capture.capture_tree(open_project(project), [])
    assert _stamp(project) is not None


def test_no_stamp_over_what_it_cannot_watch(project: Path) -> None:
    _write(project, BASE)
    os.mkfifo(project / "pipe")
    _age()
    capture.capture_tree(open_project(project), [])
    assert _stamp(project) is None


def test_a_left_out_rules_file_means_no_stamp(project: Path) -> None:
    _write(project, {**BASE, ".datmoignore": "scratch/\n.gitignore\n"})
    _age()
    capture.capture_tree(open_project(project), [])
    assert _stamp(project) is None  # the .gitignore would not be captured, nor watched


def test_damaged_stamp_means_a_full_capture(stamped: Path) -> None:
    path = stamped / ".datmo" / "cache" / "treestamp"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    assert _stamp(stamped) is None
    capture.capture_tree(open_project(stamped), [])
    assert _stamp(stamped) is not None


def test_another_threshold_is_another_key(stamped: Path) -> None:
    ctx = open_project(stamped)
    path = ctx.store.path("cache", "treestamp")
    assert TreeStamp.load(path, stamp_key(ctx.info.file_threshold)) is not None
    assert TreeStamp.load(path, stamp_key(ctx.info.file_threshold + 1)) is None


def test_missing_objects_mean_a_full_capture(
    stamped: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = open_project(stamped)
    stamp = _stamp(stamped)
    assert stamp is not None and stamp.outcome.file_digests
    ctx.store.objects.path(stamp.outcome.file_digests[0]).unlink()
    walked: list[bool] = []
    real = scan_module.scan
    monkeypatch.setattr(scan_module, "scan", lambda *a, **k: walked.append(True) or real(*a, **k))
    capture.capture_tree(ctx, [])
    assert walked and ctx.store.objects.has(stamp.outcome.file_digests[0])


def test_gc_drops_the_stamp_first(stamped: Path, cli: Any) -> None:
    assert cli("gc").exit_code == 0
    assert _stamp(stamped) is None


def test_snapshot_create_reuses_the_current_snapshot(stamped: Path, cli: Any) -> None:
    first = cli("snapshot", "create", "-m", "one")
    assert first.exit_code == 0, first.output
    again = cli("snapshot", "create", "-m", "one")
    assert again.stdout == first.stdout
    assert "nothing changed" in again.stderr
    other = cli("snapshot", "create", "-m", "two")
    assert other.exit_code == 0 and other.stdout != first.stdout


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_parts_cover_every_folder_once(n: int) -> None:
    names = [["a"] * k for k in (5, 0, 1, 9, 3, 3, 0, 12, 1)]
    parts = treestamp._parts(names, n)
    assert len(parts) <= n
    assert parts[0][0] == 0 and parts[-1][1] == len(names)
    for (_, last, _), (first, _, _) in itertools.pairwise(parts):
        assert last == first
    for first, _, offset in parts:
        assert offset == sum(map(len, names[:first]))


def test_status_and_checkout_trust_the_stamp_and_see_edits(
    stamped: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = cli("snapshot", "create", "-m", "one")
    assert made.exit_code == 0, made.output
    with monkeypatch.context() as m:
        _no_scan(m)
        clean = cli("status")
        assert clean.exit_code == 0 and "nothing changed" in clean.stdout, clean.output
    (stamped / "train.py").write_text("print('edited')\n")
    dirty = cli("status")
    assert "train.py" in dirty.stdout
    refused = cli("snapshot", "checkout", made.stdout.strip())
    assert refused.exit_code != 0 and "unsaved changes" in refused.stderr
