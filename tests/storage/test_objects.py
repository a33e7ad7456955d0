from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

from datmo.core.storage import hashing, objects
from datmo.core.storage.fsutil import Owner
from datmo.core.storage.hashing import hash_bytes, hash_file
from datmo.core.storage.objects import ObjectStore
from datmo.errors import CorruptStore, DatmoError, DiskFull

EMPTY_BLAKE3 = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore(tmp_path / "objects")


class CopySpy:
    """Counts copy_file_range calls; "python" mode makes them fail as across filesystems."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
        self.mode, self.copied = mode, 0
        self._real = os.copy_file_range
        monkeypatch.setattr(objects.os, "copy_file_range", self)

    def __call__(self, src: int, dst: int, count: int, *args: object) -> int:
        if self.mode == "python":
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        n = self._real(src, dst, count)
        self.copied += n
        return n


@pytest.fixture(params=["kernel", "python"])
def copy_spy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> CopySpy:
    """Runs a test with the in-kernel copy and with the copy through Python."""
    return CopySpy(monkeypatch, request.param)


# -- mounts: skip only when mounting is impossible here and CI is unset -------


def _cannot(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this test must run)")
    pytest.skip(reason)


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@contextlib.contextmanager
def _mounted(args: list[str], where: Path) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        _cannot("mounting a filesystem needs root")
    r = _run(["mount", *args, str(where)])
    if r.returncode != 0:
        _cannot(f"mount {' '.join(args)} is not permitted here: {r.stderr.strip()}")
    try:
        yield where
    finally:
        if _run(["umount", str(where)]).returncode != 0:
            _run(["umount", "-l", str(where)])


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    with _mounted(["-t", "tmpfs", "-o", "size=1m", "tmpfs"], tmp_path / "full") as mnt:
        yield mnt


@pytest.fixture
def xfs_reflink(tmp_path: Path) -> Iterator[Path]:
    if shutil.which("mkfs.xfs") is None:
        _cannot("mkfs.xfs is not installed")
    image = tmp_path / "xfs.img"
    with open(image, "wb") as f:
        f.truncate(300 << 20)  # sparse; the smallest size mkfs.xfs accepts
    r = _run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)])
    if r.returncode != 0:
        _cannot(f"mkfs.xfs failed: {r.stderr.strip()}")
    with _mounted(["-o", "loop", str(image)], tmp_path / "xfs") as mnt:
        yield mnt


# -- hashing ------------------------------------------------------------------


def test_hashes_match_blake3(tmp_path: Path) -> None:
    data = os.urandom(3 * hashing.HASH_CHUNK + 17)  # several chunks and a partial one
    assert hash_bytes(b"") == EMPTY_BLAKE3
    assert hash_bytes(data) == blake3(data).hexdigest()
    assert hash_file(_write(tmp_path / "f", data)) == blake3(data).hexdigest()


# -- put / restore ------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 5, hashing.THREAD_MIN + 12345])  # serial and threaded copy
def test_put_restore_roundtrip(
    store: ObjectStore, tmp_path: Path, size: int, copy_spy: CopySpy
) -> None:
    data = os.urandom(size)
    digest, stored = store.put_file(_write(tmp_path / "src.bin", data))
    assert (digest, stored) == (blake3(data).hexdigest(), size)
    assert store.has(digest) and store.size(digest) == size and store.verify(digest)
    store.restore(digest, tmp_path / "out" / "dest.bin")
    assert (tmp_path / "out" / "dest.bin").read_bytes() == data
    assert list(store.tmp.iterdir()) == []
    # both copies (in and out of the store) took the path under test
    assert copy_spy.copied == (2 * size if copy_spy.mode == "kernel" else 0)


class DirectSpy:
    """Big-file mode at test sizes; records O_DIRECT switches and can refuse direct writes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, refuse: bool = False) -> None:
        monkeypatch.setattr(hashing, "DIRECT_MIN", 1 << 20)
        monkeypatch.setattr(hashing, "DIRECT_CHUNK", 64 << 10)  # several chunks per file
        self.switches: list[bool] = []
        self.refused = 0
        real_set, real_write = hashing._set_direct, os.write

        def set_direct(fd: int, on: bool) -> bool:
            now = real_set(fd, on)
            self.switches.append(now)
            return now

        def write(fd: int, data: Any) -> int:
            if refuse and os.O_DIRECT & fcntl.fcntl(fd, fcntl.F_GETFL):
                self.refused += 1
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            return real_write(fd, data)

        monkeypatch.setattr(hashing, "_set_direct", set_direct)
        monkeypatch.setattr(hashing.os, "write", write)


@pytest.mark.parametrize("tail", [0, 12345])  # whole blocks, and a tail that is not
def test_big_files_go_in_directly(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tail: int
) -> None:
    spy = DirectSpy(monkeypatch)
    data = os.urandom((3 << 20) + tail)
    digest, size = store.put_file(_write(tmp_path / "big.bin", data))
    assert (digest, size) == (blake3(data).hexdigest(), len(data))
    assert store.path(digest).read_bytes() == data and store.verify(digest)
    assert spy.switches[0] is True  # O_DIRECT was on (this filesystem takes it)
    assert spy.switches[1:] == ([False] if tail else [])  # off only for the tail


def test_a_refused_direct_write_is_made_again_buffered(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = DirectSpy(monkeypatch, refuse=True)
    data = os.urandom((2 << 20) + 999)
    digest, size = store.put_file(_write(tmp_path / "big.bin", data))
    assert spy.refused == 1 and spy.switches[:2] == [True, False]
    assert (digest, size) == (blake3(data).hexdigest(), len(data))
    assert store.path(digest).read_bytes() == data


def test_a_short_read_mid_file_ends_direct_writes(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Some filesystems (FUSE, network) return less than asked before the end.
    spy = DirectSpy(monkeypatch)
    real_readv, calls = os.readv, []

    def readv(fd: int, bufs: list[Any]) -> int:
        calls.append(fd)
        if len(calls) == 2:
            return real_readv(fd, [memoryview(bufs[0])[:5000]])
        return real_readv(fd, bufs)

    monkeypatch.setattr(hashing.os, "readv", readv)
    data = os.urandom(2 << 20)
    digest, _ = store.put_file(_write(tmp_path / "big.bin", data))
    assert digest == blake3(data).hexdigest() and store.path(digest).read_bytes() == data
    assert spy.switches[:2] == [True, False]


def test_same_content_stored_once(store: ObjectStore, tmp_path: Path) -> None:
    d1, _ = store.put_file(_write(tmp_path / "a", b"same"))
    d2, _ = store.put_file(_write(tmp_path / "b", b"same"))
    assert d1 == d2 == store.put_bytes(b"same")
    assert list(store.iter_digests()) == [d1]
    assert _files(store.root) == [store.path(d1)]  # nothing left in tmp either


def test_object_is_read_only(store: ObjectStore, tmp_path: Path) -> None:
    digest, _ = store.put_file(_write(tmp_path / "a", b"weights"))
    assert stat.S_IMODE(os.stat(store.path(digest)).st_mode) == 0o444


def test_rewriting_source_in_place_keeps_object(store: ObjectStore, tmp_path: Path) -> None:
    src = _write(tmp_path / "model.bin", b"epoch 1")
    digest, _ = store.put_file(src)
    with open(src, "wb") as f:  # what a training script does to its checkpoint
        f.write(b"epoch 2")
    assert store.read_bytes(digest) == b"epoch 1"
    assert os.stat(src).st_ino != os.stat(store.path(digest)).st_ino


def test_put_bytes_read_bytes(store: ObjectStore) -> None:
    digest = store.put_bytes(b'{"acc": 0.9}')
    assert store.read_bytes(digest) == b'{"acc": 0.9}'


def test_refuses_symlink_dir_and_fifo(store: ObjectStore, tmp_path: Path) -> None:
    target = _write(tmp_path / "target", b"x")
    (tmp_path / "link").symlink_to(target)
    os.mkfifo(tmp_path / "fifo")  # must be refused, not block forever
    with pytest.raises(DatmoError, match="symbolic link"):
        store.put_file(tmp_path / "link")
    with pytest.raises(DatmoError, match="not a regular file"):
        store.put_file(tmp_path / "fifo")
    with pytest.raises(DatmoError, match="cannot read"):
        store.put_file(tmp_path / "missing")
    assert list(store.iter_digests()) == []


def test_read_error_names_the_file(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copy_spy: CopySpy
) -> None:
    src = _write(tmp_path / "data.bin", b"x" * 100)

    def eio(*args: object) -> int:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    if copy_spy.mode == "kernel":
        monkeypatch.setattr(objects.os, "copy_file_range", eio)
    monkeypatch.setattr(objects.os, "readv", eio)
    with pytest.raises(DatmoError, match=r"cannot read .*data\.bin: Input/output error"):
        store.put_file(src)
    assert list(store.tmp.iterdir()) == []


def _tamper(store: ObjectStore, digest: str, data: bytes) -> None:
    path = store.path(digest)
    os.chmod(path, 0o644)
    path.write_bytes(data)


def test_restore_tampered_object_leaves_dest(store: ObjectStore, tmp_path: Path) -> None:
    digest, _ = store.put_file(_write(tmp_path / "a", b"good bytes"))
    _tamper(store, digest, b"evil bytes")
    dest = _write(tmp_path / "work" / "a", b"user's current file")
    with pytest.raises(CorruptStore, match=rf"object {digest[:12]} .*damaged.*datmo fsck"):
        store.restore(digest, dest)
    assert dest.read_bytes() == b"user's current file"
    assert os.listdir(dest.parent) == ["a"]  # no .datmo-restore- temp left
    assert not store.verify(digest)
    with pytest.raises(CorruptStore, match="damaged"):
        store.read_bytes(digest)


def test_put_repairs_truncated_object(store: ObjectStore, tmp_path: Path) -> None:
    src = _write(tmp_path / "a", b"complete contents")
    digest, _ = store.put_file(src)
    _tamper(store, digest, b"compl")
    assert store.put_file(src) == (digest, 17)
    assert store.verify(digest)


def test_missing_object(store: ObjectStore, tmp_path: Path) -> None:
    digest = hash_bytes(b"never stored")
    assert not store.has(digest) and not store.verify(digest)
    with pytest.raises(CorruptStore, match="missing"):
        store.restore(digest, tmp_path / "dest")
    with pytest.raises(CorruptStore, match="missing"):
        store.read_bytes(digest)
    assert not (tmp_path / "dest").exists()


def test_restore_replaces_symlink_not_target(store: ObjectStore, tmp_path: Path) -> None:
    target = _write(tmp_path / "elsewhere" / "precious", b"do not touch")
    dest = tmp_path / "work" / "data.csv"
    dest.parent.mkdir()
    dest.symlink_to(target)
    digest = store.put_bytes(b"a,b\n1,2\n")
    store.restore(digest, dest)
    assert not dest.is_symlink() and dest.read_bytes() == b"a,b\n1,2\n"
    assert target.read_bytes() == b"do not touch"


def test_restore_mode(store: ObjectStore, tmp_path: Path) -> None:
    digest = store.put_bytes(b"#!/bin/sh\necho hi\n")
    store.restore(digest, tmp_path / "run.sh", mode=0o755)
    store.restore(digest, tmp_path / "plain.sh")
    assert stat.S_IMODE(os.stat(tmp_path / "run.sh").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / "plain.sh").st_mode) == 0o644


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_owner_gets_everything_created(tmp_path: Path) -> None:
    owner = Owner(12345, 23456)
    store = ObjectStore(tmp_path / "objects", owner)
    digest, _ = store.put_file(_write(tmp_path / "a", b"data"))
    store.restore(digest, tmp_path / "work" / "sub" / "a", owner=owner)
    created = [
        store.root,
        store.tmp,
        store.path(digest).parent,
        store.path(digest),
        tmp_path / "work",
        tmp_path / "work" / "sub",
        tmp_path / "work" / "sub" / "a",
    ]
    assert {(os.stat(p).st_uid, os.stat(p).st_gid) for p in created} == {(12345, 23456)}


def test_interrupt_removes_temp(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copy_spy: CopySpy
) -> None:
    src = _write(tmp_path / "big", os.urandom(hashing.THREAD_MIN + 1))
    calls = []

    def interrupted(name: str, real: Callable[..., int]) -> Callable[..., int]:
        def call(*args: Any) -> int:
            calls.append(name)
            if len(calls) == 3:  # Ctrl-C in the middle of the copy
                raise KeyboardInterrupt
            return real(*args)

        return call

    monkeypatch.setattr(objects.os, "readv", interrupted("readv", os.readv))
    monkeypatch.setattr(objects.os, "copy_file_range", interrupted("cfr", os.copy_file_range))
    with pytest.raises(KeyboardInterrupt):
        store.put_file(src)
    assert calls[-1] == ("cfr" if copy_spy.mode == "kernel" else "readv")
    assert list(store.tmp.iterdir()) == [] and list(store.iter_digests()) == []


def test_delete_iter_and_invalid_ids(store: ObjectStore) -> None:
    digests = {store.put_bytes(bytes([i])) for i in range(5)}
    assert set(store.iter_digests()) == digests
    gone = digests.pop()
    store.delete(gone)
    store.delete(gone)  # deleting twice is fine (concurrent gc)
    assert set(store.iter_digests()) == digests and not store.has(gone)
    with pytest.raises(CorruptStore, match="invalid object id"):
        store.path("../../etc/passwd" + "0" * 48)


def test_clean_tmp_removes_only_old_files(store: ObjectStore) -> None:
    store.tmp.mkdir(parents=True)
    old, new = store.tmp / "put-old", store.tmp / "put-new"
    old.write_bytes(b"x")
    new.write_bytes(b"y")
    os.utime(old, (1_000_000, 1_000_000))
    store.clean_tmp(older_than_s=3600)
    assert sorted(store.tmp.iterdir()) == [new]


def test_check_space(store: ObjectStore) -> None:
    store.check_space(1024)
    with pytest.raises(DiskFull, match=r"not enough disk space in .*: need ") as e:
        store.check_space(1 << 60)
    assert "\n" not in str(e.value) and "free some space" in str(e.value)


# -- real filesystems ---------------------------------------------------------


def test_disk_full(small_tmpfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    CopySpy(monkeypatch, "python")  # the source is on another filesystem: copy through Python
    store = ObjectStore(small_tmpfs / "objects")
    kept = store.put_bytes(b"an earlier result")
    big = _write(tmp_path / "big.bin", os.urandom(2_000_000))
    with pytest.raises(DiskFull) as e:
        store.put_file(big)
    assert "\n" not in str(e.value) and "free some space" in str(e.value)
    assert list(store.tmp.iterdir()) == []
    assert list(store.iter_digests()) == [kept] and store.read_bytes(kept) == b"an earlier result"
    # restoring onto the full disk fails cleanly too
    digest, _ = ObjectStore(tmp_path / "objects").put_file(big)
    with pytest.raises(DiskFull):
        ObjectStore(tmp_path / "objects").restore(digest, small_tmpfs / "work" / "big.bin")
    assert os.listdir(small_tmpfs / "work") == []
    with pytest.raises(DiskFull, match="not enough disk space"):
        store.check_space(2_000_000)


def test_disk_full_during_kernel_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _mounted(["-t", "tmpfs", "-o", "size=3m", "tmpfs"], tmp_path / "fs") as mnt:
        spy = CopySpy(monkeypatch, "kernel")
        src = _write(mnt / "big.bin", os.urandom(2_000_000))  # leaves about 1 MB free
        store = ObjectStore(mnt / "objects")
        with pytest.raises(DiskFull, match="disk full while storing"):
            store.put_file(src)
        assert spy.copied > 0  # it failed part-way through the in-kernel copy
        assert list(store.tmp.iterdir()) == [] and list(store.iter_digests()) == []


def test_reflink_put_and_restore(xfs_reflink: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ObjectStore(xfs_reflink / "objects")
    assert store.reflinks_supported()

    def no_copy(*args: object) -> None:
        raise AssertionError("copied bytes instead of cloning")

    monkeypatch.setattr(hashing, "_write_all", no_copy)
    data = os.urandom(hashing.THREAD_MIN + 5)
    src = _write(xfs_reflink / "work" / "weights.bin", data)
    digest, size = store.put_file(src)
    assert (digest, size) == (blake3(data).hexdigest(), len(data))
    with open(src, "r+b") as f:  # in-place rewrite: copy-on-write must protect the object
        f.write(b"\0" * 4096)
    assert store.verify(digest)
    dest = xfs_reflink / "work" / "restored.bin"
    store.restore(digest, dest, mode=0o600)
    assert dest.read_bytes() == data and stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    assert list(store.tmp.iterdir()) == []


def test_no_reflink_on_tmpfs(small_tmpfs: Path) -> None:
    assert not ObjectStore(small_tmpfs / "objects").reflinks_supported()
