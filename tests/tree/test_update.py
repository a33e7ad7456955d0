"""The incremental capture (update.py) against a full capture of the same tree.

After every change, the capture that follows (incremental where it can be) must equal
a capture made with no stamp at all: the same code tree, manifest, counts, bytes,
left-out paths and requirements. A seeded run of random edits checks it round after
round, each capture building on the previous one's stamp.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_stamp import BASE, CHANGES, _age, _write

from datmo.core.controller.project import open_project
from datmo.core.tree import capture, update


def _full(c: capture.Captured) -> tuple[Any, ...]:
    return (
        c.code_id,
        c.files_id,
        c.code_count,
        c.file_count,
        c.total_bytes,
        c.skipped,
        c.requirements_id,
    )


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many captures went which way."""
    seen = {"incremental": 0, "declined": 0}
    real = update.update

    def counted(*args: Any) -> Any:
        done = real(*args)
        seen["incremental" if done is not None else "declined"] += 1
        return done

    monkeypatch.setattr(update, "update", counted)
    return seen


def _oracle(root: Path) -> capture.Captured:
    cache = root / ".datmo" / "cache"
    for name in ("treestamp", "lastcapture", "stat"):
        (cache / name).unlink(missing_ok=True)
    return capture.capture_tree(open_project(root), [])


@pytest.fixture
def captured(project: Path) -> Iterator[Path]:
    _write(project, BASE)
    _age()
    capture.capture_tree(open_project(project), [])
    yield project


# The changes an incremental capture takes on; the others (a new folder, a rules file,
# a venv appearing...) must be declined and done in full.
INCREMENTAL = {
    "edit",
    "same size and mtime",
    "new file",
    "delete",
    "rename",
    "chmod +x",
    "file to symlink",
    "retarget a symlink",
    "grows past the threshold",
    "weights rewritten in place",
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_each_change_captures_as_a_full_capture_would(
    captured: Path, change: Any, calls: dict[str, int], request: pytest.FixtureRequest
) -> None:
    change(captured)
    after = capture.capture_tree(open_project(captured), [])
    assert _full(after) == _full(_oracle(captured))
    name = request.node.callspec.id
    if name in INCREMENTAL:
        assert calls["incremental"] == 1, f"{name}: expected an incremental capture"


def _random_edit(root: Path, rng: random.Random, step: int) -> str:
    def ours(p: Path) -> bool:
        return ".datmo" not in p.parts and "venv" not in p.parts

    folders = sorted(p for p in root.rglob("*") if p.is_dir() and ours(p))
    files = sorted(p for p in root.rglob("*") if (p.is_file() or p.is_symlink()) and ours(p))
    kinds = ["edit", "edit", "edit", "add", "add", "delete", "chmod", "big", "binary"]
    kind = rng.choice([*kinds, "import", "link", "gitignore", "folder", "rmfolder"])
    if kind == "edit" and files:
        f = rng.choice([p for p in files if not p.is_symlink()] or files)
        if not f.is_symlink():
            f.write_bytes(f.read_bytes() + b"# %d\n" % step)
    elif kind == "add":
        (rng.choice(folders) / f"new{step}.py").write_text(f"v = {step}\n")
    elif kind == "delete" and files:
        rng.choice(files).unlink()
    elif kind == "chmod" and files:
        f = rng.choice([p for p in files if not p.is_symlink()] or files)
        if not f.is_symlink():
            f.chmod(f.stat().st_mode ^ 0o111)
    elif kind == "big":  # past the size threshold: from code to files
        (rng.choice(folders) / f"big{step}.dat").write_bytes(b"x" * (1 << 20) + b"%d" % step)
    elif kind == "binary":
        (rng.choice(folders) / f"img{step}.png").write_bytes(b"\x89PNG\0\0" + os.urandom(64))
    elif kind == "import":
        (rng.choice(folders) / f"imp{step}.py").write_text(f"import yaml\nimport mod{step}\n")
    elif kind == "link":
        (rng.choice(folders) / f"ln{step}").symlink_to("elsewhere")
    elif kind == "gitignore":
        with open(rng.choice(folders) / ".gitignore", "a") as f:
            f.write(f"*.dat{step % 2}\n")
    elif kind == "folder":
        sub = rng.choice(folders) / f"dir{step}"
        sub.mkdir()
        (sub / "m.py").write_text("import click\n")
    elif kind == "rmfolder":
        empty = [d for d in folders if d != root and not any(d.iterdir())]
        if empty:
            rng.choice(empty).rmdir()
    return kind


def test_random_edits_round_after_round(captured: Path, calls: dict[str, int]) -> None:
    rng = random.Random(17)
    for step in range(40):
        kinds = [_random_edit(captured, rng, step * 10 + i) for i in range(rng.randint(1, 3))]
        _age()  # so that each capture leaves a stamp the next one can build on
        after = capture.capture_tree(open_project(captured), [])
        expected = _oracle(captured)
        assert _full(after) == _full(expected), f"step {step}: {kinds}"
        _age()
        capture.capture_tree(open_project(captured), [])  # the oracle's stamp, used next
    assert calls["incremental"] >= 10, calls  # most rounds are plain edits


def test_a_damaged_or_foreign_last_capture_means_a_full_capture(
    captured: Path, calls: dict[str, int]
) -> None:
    last = captured / ".datmo" / "cache" / "lastcapture"
    last.write_bytes(b"damaged")
    (captured / "train.py").write_text("import os\nprint('other')\n")
    after = capture.capture_tree(open_project(captured), [])
    assert calls == {"incremental": 0, "declined": 0}  # never even tried
    assert _full(after) == _full(_oracle(captured))


def test_a_last_capture_saved_with_another_stamp_is_never_used(
    captured: Path, calls: dict[str, int]
) -> None:
    """Two captures at once each write a stamp and a last capture: a mixed pair (one's
    stamp, the other's record of its folders) must not be built on."""
    last = captured / ".datmo" / "cache" / "lastcapture"
    first = last.read_bytes()
    (captured / ".env").unlink()  # left out: no code or file changes, other left-out paths
    _age()
    capture.capture_tree(open_project(captured), [])
    last.write_bytes(first)
    (captured / "train.py").write_text("import os\nprint('other')\n")
    calls.update(incremental=0, declined=0)
    after = capture.capture_tree(open_project(captured), [])
    assert calls == {"incremental": 0, "declined": 1}, "a record of another capture was used"
    assert _full(after) == _full(_oracle(captured))


def test_a_last_capture_of_another_shape_is_not_loaded(tmp_path: Path) -> None:
    from datmo.core.storage import cachefile

    path = tmp_path / "lastcapture"
    good = update.LastCapture("c", "f", [dict.fromkeys(update._PART_KEYS)], [])
    good.save(path, None)
    assert update.LastCapture.load(path) is not None
    cachefile.write(
        path, update._MAGIC, update.FORMAT_VERSION, ("c", "f", [{"code": []}], [], ""), None
    )
    assert update.LastCapture.load(path) is None  # a part without its keys
    cachefile.write(path, update._MAGIC, update.FORMAT_VERSION, ("c", "f"), None)
    assert update.LastCapture.load(path) is None
