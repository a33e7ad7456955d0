"""Batched durability (issue 17): objects stored in a batch are made durable by one pass
at its end, before anything may name them; put_file alone stays durable on return."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

from datmo.core.storage import fsutil
from datmo.core.storage.objects import ObjectStore


def test_put_file_alone_is_durable_on_return(tmp_path: Path, calls: list[Any]) -> None:
    store = ObjectStore(tmp_path / "objects")
    src = tmp_path / "a.bin"
    src.write_bytes(b"a" * 1000)
    digest, _ = store.put_file(src)
    synced = [v for k, v in calls if k == "fsync"]
    assert synced[0].startswith(str(store.tmp))  # the bytes, before the rename
    assert str(store.path(digest).parent) in synced  # then the name
    assert not any(k == "syncfs" for k, _ in calls)


def test_a_batch_syncs_once_at_its_end(tmp_path: Path, calls: list[Any]) -> None:
    store = ObjectStore(tmp_path / "objects")
    paths = []
    for i in range(20):
        p = tmp_path / f"{i}.bin"
        p.write_bytes(os.urandom(100))
        paths.append(p)
    with store.batch():
        digests = [store.put_file(p)[0] for p in paths]
        digests.append(store.put_bytes(b"some bytes"))
        assert all(store.has(d) for d in digests)  # in place already
        assert not [c for c in calls if c[0] != "record"]  # but nothing synced yet
    assert calls == [("syncfs", str(store.root))]
    assert all(store.verify(d) for d in digests)


def test_without_syncfs_each_object_and_folder_is_synced(
    tmp_path: Path, calls: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fsutil, "syncfs", lambda path: False)
    store = ObjectStore(tmp_path / "objects")
    with store.batch():
        digests = [store.put_bytes(os.urandom(50)) for _ in range(5)]
    synced = {v for k, v in calls if k == "fsync"}
    assert {str(store.path(d)) for d in digests} <= synced
    assert {str(store.path(d).parent) for d in digests} | {str(store.root)} <= synced


def test_a_batch_left_by_an_error_still_syncs(tmp_path: Path, calls: list[Any]) -> None:
    store = ObjectStore(tmp_path / "objects")
    with pytest.raises(KeyboardInterrupt), store.batch():
        store.put_bytes(b"x")
        raise KeyboardInterrupt
    assert calls == [("syncfs", str(store.root))]


def test_a_snapshot_names_its_objects_only_after_the_sync(
    project: Path, cli: Any, tree: Any, calls: list[Any]
) -> None:
    rng = random.Random(17)
    tree(project, {f"img/{i}.jpg": b"\xff\xd8\0" + rng.randbytes(3000) for i in range(50)})
    tree(project, {"big.dat": rng.randbytes(2 << 20), "a.py": "print(1)\n"})
    r = cli("snapshot", "create", "-m", "one")
    assert r.exit_code == 0, r.output
    kinds = [k for k, _ in calls]
    first_sync = kinds.index("syncfs")
    assert kinds.index("record") > first_sync
    objects_dir = str(project / ".datmo" / "objects")
    # no object fsynced one by one before the pass: the 51 files wait for it
    early = [v for k, v in calls[:first_sync] if k == "fsync" and v.startswith(objects_dir)]
    assert early == []
