from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from datmo.core.storage import statcache
from datmo.core.storage.fsutil import Owner
from datmo.core.storage.statcache import StatCache
from datmo.core.util import probe
from datmo.core.util.probe import RACY_NS

B3 = "ab" * 32
B3_OTHER = "cd" * 32
SHA1 = "12" * 20


def _old_file(path: Path, data: bytes) -> os.stat_result:
    """A file last written 10 s ago, as most files in a tree are."""
    path.write_bytes(data)
    past = time.time_ns() - 10_000_000_000
    os.utime(path, ns=(past, past))
    return os.stat(path)


def _fake_stat(st: os.stat_result, **changes: int) -> os.stat_result:
    fields = {
        k: getattr(st, k) for k in ("st_size", "st_mtime_ns", "st_ctime_ns", "st_ino", "st_mode")
    }
    return cast(os.stat_result, SimpleNamespace(**(fields | changes)))


@pytest.fixture
def cache_path(tmp_path: Path) -> Path:
    return tmp_path / "statcache"


def test_hit_on_unchanged_file(tmp_path: Path, cache_path: Path) -> None:
    st = _old_file(tmp_path / "a.py", b"print(1)\n")
    cache = StatCache(cache_path)
    assert cache.lookup("a.py", st, "blake3") is None
    cache.record("a.py", st, "blake3", B3, time.time_ns())
    assert cache.lookup("a.py", os.stat(tmp_path / "a.py"), "blake3") == B3


def test_miss_after_same_size_rewrite(tmp_path: Path, cache_path: Path) -> None:
    f = tmp_path / "a.txt"
    st = _old_file(f, b"aaaa")
    cache = StatCache(cache_path)
    cache.record("a.txt", st, "blake3", B3, time.time_ns())
    f.write_bytes(b"bbbb")  # same size, same inode, new mtime
    st2 = os.stat(f)
    assert (st2.st_size, st2.st_ino) == (st.st_size, st.st_ino)
    assert cache.lookup("a.txt", st2, "blake3") is None


@pytest.mark.parametrize("field", ["st_size", "st_mtime_ns", "st_ctime_ns", "st_ino", "st_mode"])
def test_each_stat_field_matters(tmp_path: Path, cache_path: Path, field: str) -> None:
    st = _old_file(tmp_path / "a", b"x")
    cache = StatCache(cache_path)
    cache.record("a", st, "blake3", B3, time.time_ns())
    assert cache.lookup("a", _fake_stat(st), "blake3") == B3
    changed = _fake_stat(st, **{field: getattr(st, field) - 1})
    assert cache.lookup("a", changed, "blake3") is None


def test_racy_entry_is_a_miss_until_rerecorded(tmp_path: Path, cache_path: Path) -> None:
    f = tmp_path / "racy"
    before_read = time.time_ns()  # taken before hashing, as the snapshot code does
    f.write_bytes(b"written in the same tick as the hash")
    st = os.stat(f)
    cache = StatCache(cache_path)
    cache.record("racy", st, "blake3", B3, before_read)
    assert cache.lookup("racy", st, "blake3") is None
    # exactly at the boundary is still racy
    cache.record("racy", st, "blake3", B3, st.st_mtime_ns + RACY_NS)
    assert cache.lookup("racy", st, "blake3") is None
    # re-recorded once the tick is long past: now trusted
    cache.record("racy", st, "blake3", B3, st.st_mtime_ns + RACY_NS + 1)
    assert cache.lookup("racy", st, "blake3") == B3


def test_whole_second_mtime_is_racy_for_two_seconds(tmp_path: Path, cache_path: Path) -> None:
    # On a filesystem that keeps whole seconds, a write 1.5 s later can leave the mtime.
    f = tmp_path / "coarse"
    f.write_bytes(b"data")
    second = (time.time_ns() // probe.SECOND_NS - 10) * probe.SECOND_NS
    os.utime(f, ns=(second, second))
    st = os.stat(f)
    cache = StatCache(cache_path)
    cache.record("coarse", st, "blake3", B3, second + probe.SECOND_NS * 3 // 2)
    assert cache.lookup("coarse", st, "blake3") is None
    cache.record("coarse", st, "blake3", B3, second + probe.COARSE_NS + 1)
    assert cache.lookup("coarse", st, "blake3") == B3


def test_save_load_roundtrip(tmp_path: Path, cache_path: Path) -> None:
    cache = StatCache(cache_path)
    stats = {f"dir/f{i}": _old_file(tmp_path / f"f{i}", bytes([i])) for i in range(50)}
    for rel, st in stats.items():
        cache.record(rel, st, "blake3", f"{int(rel[5:]):064x}", time.time_ns())
    cache.save()
    loaded = StatCache(cache_path)
    for rel, st in stats.items():
        assert loaded.lookup(rel, st, "blake3") == f"{int(rel[5:]):064x}"
    assert loaded.lookup("dir/unknown", stats["dir/f0"], "blake3") is None


def test_save_only_when_changed(tmp_path: Path, cache_path: Path) -> None:
    st = _old_file(tmp_path / "a", b"x")
    cache = StatCache(cache_path)
    cache.save()
    assert not cache_path.exists()  # nothing recorded, nothing written
    ns = time.time_ns()
    cache.record("a", st, "blake3", B3, ns)
    cache.save()
    ino = os.stat(cache_path).st_ino
    again = StatCache(cache_path)
    assert again.lookup("a", st, "blake3") == B3
    again.record("a", st, "blake3", B3, ns)  # the same entry again is not a change
    again.save()
    cache.save()
    assert os.stat(cache_path).st_ino == ino  # atomic writes replace the inode; none happened


def test_per_algo_separation(tmp_path: Path, cache_path: Path) -> None:
    st = _old_file(tmp_path / "train.py", b"code")
    cache = StatCache(cache_path)
    cache.record("train.py", st, "sha1", SHA1, time.time_ns())
    assert cache.lookup("train.py", st, "blake3") is None
    cache.record("train.py", st, "blake3", B3, time.time_ns())
    cache.save()
    loaded = StatCache(cache_path)
    assert loaded.lookup("train.py", st, "sha1") == SHA1
    assert loaded.lookup("train.py", st, "blake3") == B3
    with pytest.raises(ValueError):
        cache.record("other.py", st, "sha1", B3, time.time_ns())  # wrong width for sha1


def test_update_existing_entry(tmp_path: Path, cache_path: Path) -> None:
    f = tmp_path / "a"
    cache = StatCache(cache_path)
    cache.record("a", _old_file(f, b"one"), "blake3", B3, time.time_ns())
    st2 = _old_file(f, b"two!")
    cache.record("a", st2, "blake3", B3_OTHER, time.time_ns())
    cache.save()
    assert StatCache(cache_path).lookup("a", st2, "blake3") == B3_OTHER


def test_prune(tmp_path: Path, cache_path: Path) -> None:
    cache = StatCache(cache_path)
    stats = {name: _old_file(tmp_path / name, name.encode()) for name in "abcd"}
    for i, (name, st) in enumerate(stats.items()):
        cache.record(name, st, "blake3", f"{i:064x}", time.time_ns())
    cache.record("b", stats["b"], "sha1", SHA1, time.time_ns())
    cache.prune(["a", "c"])
    cache.save()
    loaded = StatCache(cache_path)
    assert [loaded.lookup(n, stats[n], "blake3") for n in "abcd"] == [
        f"{0:064x}",
        None,
        f"{2:064x}",
        None,
    ]
    assert loaded.lookup("b", stats["b"], "sha1") is None
    loaded.record("e", stats["a"], "blake3", B3, time.time_ns())  # rows still line up
    assert loaded.lookup("e", stats["a"], "blake3") == B3
    assert loaded.lookup("c", stats["c"], "blake3") == f"{2:064x}"


def test_huge_inode_numbers(tmp_path: Path, cache_path: Path) -> None:
    st = _fake_stat(_old_file(tmp_path / "a", b"x"), st_ino=(1 << 64) - 5)
    cache = StatCache(cache_path)
    cache.record("a", st, "blake3", B3, time.time_ns())
    cache.save()
    assert StatCache(cache_path).lookup("a", st, "blake3") == B3
    assert StatCache(cache_path).lookup("a", _fake_stat(st, st_ino=5), "blake3") is None


def _flip_bit(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def _saved_cache(tmp_path: Path, cache_path: Path) -> os.stat_result:
    st = _old_file(tmp_path / "a", b"x")
    cache = StatCache(cache_path)
    cache.record("a", st, "blake3", B3, time.time_ns())
    cache.save()
    assert StatCache(cache_path).lookup("a", st, "blake3") == B3
    return st


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b"garbage",
        lambda b: b"",
        lambda b: b[: len(b) // 2],  # truncated
        lambda b: _flip_bit(b, b.index(bytes.fromhex(B3))),  # bit rot inside a digest
        lambda b: b.replace(statcache._MAGIC, b"OLDCACHE", 1),
        lambda b: b[:8] + (1).to_bytes(2, "little") + b[10:],  # older format version
        lambda b: b[:10] + b"\0\0\0\0" + b[14:],  # written by another Python
    ],
)
def test_damaged_or_foreign_file_is_empty(
    tmp_path: Path, cache_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    st = _saved_cache(tmp_path, cache_path)
    cache_path.write_bytes(damage(cache_path.read_bytes()))
    cache = StatCache(cache_path)
    assert cache.lookup("a", st, "blake3") is None
    cache.record("a", st, "blake3", B3_OTHER, time.time_ns())  # and it recovers on save
    cache.save()
    assert StatCache(cache_path).lookup("a", st, "blake3") == B3_OTHER


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_owner(tmp_path: Path, cache_path: Path) -> None:
    st = _old_file(tmp_path / "a", b"x")
    cache = StatCache(cache_path, Owner(4321, 4322))
    cache.record("a", st, "blake3", B3, time.time_ns())
    cache.save()
    assert (os.stat(cache_path).st_uid, os.stat(cache_path).st_gid) == (4321, 4322)
