"""What the durability tests watch: fsync and syncfs calls and record writes, in order."""

from __future__ import annotations

import os
from typing import Any

import pytest

from datmo.core.storage import fsutil
from datmo.core.storage.store import Store


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """fsync (by what it names), syncfs (where make_durable looks it up) and record
    writes (by kind), in order."""
    seen: list[tuple[str, Any]] = []
    real_fsync, real_syncfs, real_write = os.fsync, fsutil.syncfs, Store.write_entity

    def fsync(fd: int) -> None:
        seen.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def syncfs(path: Any) -> bool:
        seen.append(("syncfs", str(path)))
        return bool(real_syncfs(path))

    def write_entity(self: Store, kind: str, doc: dict[str, Any]) -> Any:
        seen.append(("record", kind))
        return real_write(self, kind, doc)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(fsutil, "syncfs", syncfs)
    monkeypatch.setattr(Store, "write_entity", write_entity)
    return seen
