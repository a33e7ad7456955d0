"""WriteOut: stored objects written out as new files, each checked in one pass (issue 17)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from datmo.core.storage import objects, writeout
from datmo.core.storage.hashing import THREAD_MIN
from datmo.core.storage.objects import ObjectStore
from datmo.core.storage.writeout import WriteOut
from datmo.errors import CorruptStore, DatmoError


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore(tmp_path / "objects")


def _damage(store: ObjectStore, digest: str, data: bytes) -> None:
    path = store.path(digest)
    os.chmod(path, 0o644)
    path.write_bytes(data)


def test_writes_the_bytes_and_the_exact_mode_whatever_the_umask(
    store: ObjectStore, tmp_path: Path
) -> None:
    data = os.urandom(70_000)
    digest = store.put_bytes(data)
    old = os.umask(0o077)
    try:
        out = WriteOut(store, None)  # it reads the umask once, as a command starts
        for name, mode in (("a", 0o644), ("b", 0o755), ("c", 0o600), ("d", 0o4755)):
            out.object(digest, len(data), str(tmp_path / name), mode)
            assert (tmp_path / name).read_bytes() == data
            assert stat.S_IMODE(os.lstat(tmp_path / name).st_mode) == mode, name
    finally:
        os.umask(old)
    empty = store.put_bytes(b"")
    out.object(empty, 0, str(tmp_path / "empty"), 0o644)
    assert (tmp_path / "empty").read_bytes() == b""


def test_a_big_object_goes_through_the_threaded_copy(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(THREAD_MIN + 12345)
    digest = store.put_bytes(data)
    WriteOut(store, None).object(digest, len(data), str(tmp_path / "big"), 0o644)
    assert (tmp_path / "big").read_bytes() == data


@pytest.mark.parametrize("how", ["garble", "truncate", "grow", "missing"])
def test_a_damaged_object_fails_and_leaves_no_file(
    store: ObjectStore, tmp_path: Path, how: str
) -> None:
    data = os.urandom(50_000)
    digest = store.put_bytes(data)
    if how == "garble":  # same size, other bytes: only the hash can tell
        _damage(store, digest, data[:20_000] + bytes(10_000) + data[30_000:])
    elif how == "truncate":
        _damage(store, digest, data[:25_000])
    elif how == "grow":  # the recorded bytes, then more: still not that object
        _damage(store, digest, data + b"more")
    else:
        store.delete(digest)
    dest = tmp_path / "out" / "x.bin"
    dest.parent.mkdir()
    with pytest.raises(CorruptStore, match=digest[:12]):
        WriteOut(store, None).object(digest, len(data), str(dest), 0o644)
    assert os.listdir(dest.parent) == []


def test_an_interrupt_mid_copy_removes_the_file(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(50_000)
    digest = store.put_bytes(data)

    def interrupted(fd: int, data: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(writeout, "_write_all", lambda fd, view, on: interrupted(fd, view))
    with pytest.raises(KeyboardInterrupt):
        WriteOut(store, None).object(digest, len(data), str(tmp_path / "x"), 0o644)
    assert not (tmp_path / "x").exists()


def test_never_writes_over_an_existing_file(store: ObjectStore, tmp_path: Path) -> None:
    digest = store.put_bytes(b"new")
    (tmp_path / "x").write_bytes(b"mine")
    with pytest.raises(DatmoError, match="File exists"):
        WriteOut(store, None).object(digest, 3, str(tmp_path / "x"), 0o644)
    assert (tmp_path / "x").read_bytes() == b"mine"


def test_a_refused_reflink_is_tried_once_per_pair_of_filesystems(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tries: list[int] = []

    def refused(src: int, dst: int) -> bool:
        tries.append(dst)
        return False  # as ext4 answers every file

    monkeypatch.setattr(objects, "reflink", refused)
    blobs = [os.urandom(1000 + i) for i in range(5)]
    digests = [store.put_bytes(b) for b in blobs]
    out = WriteOut(store, None)
    for i, (d, b) in enumerate(zip(digests, blobs, strict=True)):
        out.object(d, len(b), str(tmp_path / f"f{i}"), 0o644)
        assert (tmp_path / f"f{i}").read_bytes() == b
    assert len(tries) == 1


def test_a_filesystem_that_clones_is_asked_for_every_file(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tries: list[int] = []

    def clone(src: int, dst: int) -> bool:  # a clone, as far as the caller can tell
        tries.append(dst)
        os.copy_file_range(src, dst, 1 << 30, 0, 0)
        return True

    monkeypatch.setattr(objects, "reflink", clone)
    blobs = [os.urandom(1000 + i) for i in range(3)]
    out = WriteOut(store, None)
    for i, b in enumerate(blobs):
        out.object(store.put_bytes(b), len(b), str(tmp_path / f"f{i}"), 0o644)
        assert (tmp_path / f"f{i}").read_bytes() == b
    assert len(tries) == 3


def test_a_clone_with_the_wrong_bytes_is_caught(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clone is hashed through its own descriptor, not trusted."""

    def bad_clone(src: int, dst: int) -> bool:
        os.write(dst, b"x" * 1000)
        return True

    monkeypatch.setattr(objects, "reflink", bad_clone)
    digest = store.put_bytes(os.urandom(1000))
    with pytest.raises(CorruptStore, match=digest[:12]):
        WriteOut(store, None).object(digest, 1000, str(tmp_path / "x"), 0o644)
    assert not (tmp_path / "x").exists()


def test_data_and_links(store: ObjectStore, tmp_path: Path) -> None:
    out = WriteOut(store, None)
    out.data(b"print(1)\n", str(tmp_path / "a.py"), 0o755)
    out.link("a.py", str(tmp_path / "l"))
    assert (tmp_path / "a.py").read_bytes() == b"print(1)\n"
    assert stat.S_IMODE(os.lstat(tmp_path / "a.py").st_mode) == 0o755
    assert os.readlink(tmp_path / "l") == "a.py"
    with pytest.raises(DatmoError, match="writing"):
        out.link("b", str(tmp_path / "l"))
