"""fsutil.deferred(): durable writes in a block wait for one flush at its end (issue 14:
a sweep's 20 staged runs cost two flushes, not ~200 fsyncs); what a record names is
flushed before the record."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from datmo.core.storage import fsutil
from datmo.core.storage.objects import ObjectStore


def test_writes_in_a_block_are_flushed_once_at_its_end(tmp_path: Path, calls: list[Any]) -> None:
    (tmp_path / "a").mkdir()
    with fsutil.deferred():
        for i in range(10):
            fsutil.atomic_write_bytes(tmp_path / "a" / f"{i}.json", b"{}", None)
        with fsutil.deferred():  # an inner block joins the outer one
            fsutil.atomic_write_bytes(tmp_path / "b.json", b"{}", None)
        ObjectStore(tmp_path / "objects").put_bytes(b"an object")
        assert calls == []  # written, visible, not yet flushed
        assert (tmp_path / "a" / "9.json").read_bytes() == b"{}"
    assert calls == [("syncfs", str(tmp_path))]  # one per filesystem, from its top folder


def test_outside_a_block_every_write_is_durable_on_return(tmp_path: Path, calls: list[Any]) -> None:
    fsutil.atomic_write_bytes(tmp_path / "r.json", b"{}", None)
    assert [k for k, _ in calls] == ["fsync", "fsync"]  # the bytes, then the name
    assert calls[1][1] == str(tmp_path)


def test_a_block_left_by_an_error_still_flushes(tmp_path: Path, calls: list[Any]) -> None:
    with pytest.raises(KeyboardInterrupt), fsutil.deferred():
        fsutil.atomic_write_bytes(tmp_path / "r.json", b"{}", None)
        raise KeyboardInterrupt
    assert calls == [("syncfs", str(tmp_path))]
    assert fsutil.pending() is None


def test_another_thread_is_not_in_the_block(tmp_path: Path, calls: list[Any]) -> None:
    def write() -> None:
        fsutil.atomic_write_bytes(tmp_path / "other.json", b"{}", None)

    with fsutil.deferred():
        t = threading.Thread(target=write)
        t.start()
        t.join()
        assert [k for k, _ in calls] == ["fsync", "fsync"]  # durable on its own


def test_without_syncfs_each_file_then_each_folder_is_synced(
    tmp_path: Path, calls: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fsutil, "syncfs", lambda path: False)
    (tmp_path / "d").mkdir()
    with fsutil.deferred():
        fsutil.atomic_write_bytes(tmp_path / "d" / "x.json", b"1", None)
        fsutil.atomic_write_bytes(tmp_path / "y.json", b"2", None)
        fsutil.atomic_write_bytes(tmp_path / "y.json", b"3", None)  # replaced: one name
    synced = [v for k, v in calls if k == "fsync"]
    files = {str(tmp_path / "d" / "x.json"), str(tmp_path / "y.json")}
    assert set(synced[:3]) == files and set(synced[3:]) == {str(tmp_path / "d"), str(tmp_path)}
    assert synced.index(str(tmp_path / "d")) < synced.index(str(tmp_path))  # inner first


def test_a_sweep_flushes_its_snapshots_before_its_runs(
    project: Path, cli: Callable[..., Any], tree: Callable[..., None], calls: list[Any]
) -> None:
    tree(project, {"config.json": '{"lr": 1}', "train.py": "print(1)\n"})
    assert cli("snapshot", "create", "-m", "code").exit_code == 0
    del calls[:]
    result = cli("sweep", "--executor", "local", "python train.py", "-c", "lr=2,3,4,5,6")
    assert result.exit_code == 0, result.output
    kinds = [k if k != "record" else v for k, v in calls]
    runs_at = [i for i, k in enumerate(kinds) if k == "runs"]
    snaps_at = [i for i, k in enumerate(kinds) if k == "snapshots"]
    flushes = [i for i, k in enumerate(kinds) if k == "syncfs"]
    assert len(runs_at) == 5 and len(snaps_at) >= 5
    # every derived snapshot, then a flush, then the five records, then a flush
    assert max(snaps_at) < flushes[-2] < min(runs_at) and max(runs_at) < flushes[-1]
    # and no fsync one by one while staging: the records and snapshots wait for the flushes
    staging = [k for k in kinds[min(snaps_at[-5:]) : flushes[-1]] if k == "fsync"]
    assert staging == []
    # each record still says what its own before snapshot took, made ahead of it
    docs = [json.loads(f.read_text()) for f in (project / ".datmo" / "runs").glob("*.json")]
    assert len(docs) == 5 and all(d["timings"]["before_snapshot_s"] > 0 for d in docs)
