"""The series store: read by range, appended while the run logs, never half a point,
old runs converted by fsck (datmo.core.storage.series, seriesview)."""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Any

import pytest

from datmo.core.storage import series, seriesview
from datmo.core.storage.store import Store

RUN = "r" * 32


def _log(store: Store, lines: list[dict[str, Any]], raw: bytes = b"") -> Path:
    data = store.path("run-data", RUN)
    data.mkdir(parents=True, exist_ok=True)
    path = data / "metrics.jsonl"
    with open(path, "ab") as f:
        f.write(b"".join(json.dumps(d).encode() + b"\n" for d in lines) + raw)
    return path


def _store(tmp_path: Path) -> Store:
    (tmp_path / ".datmo").mkdir()
    return Store(tmp_path)


def _metric(step: Any, t: float, **values: Any) -> dict[str, Any]:
    return {"kind": "metrics", "step": step, "time": t, "values": values}


def test_points_round_trip_with_sources_and_odd_values(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _log(
        store,
        [
            _metric(0, 1.0, loss=2, ok=True),
            _metric(1, 2.0, loss="nan", ok=False),
            {"kind": "captured", "time": 3.0, "values": {"loss": 9}},
            {"kind": "config", "time": 3.0, "values": {"lr": 1}},
            _metric(None, 4.0, loss=0.5),
        ],
        raw=b'{"kind": "metrics", "values": {"loss": 1',  # torn: still being written
    )
    assert series.sync(store, RUN)
    assert seriesview.names(store, RUN) == ["c:loss", "m:loss", "m:ok"]
    loss = seriesview.full(store, RUN, "m:loss")
    assert loss == [[0, 2.0, 1.0], [1, None, 2.0], [None, 0.5, 4.0]]
    assert seriesview.full(store, RUN, "m:ok") == [[0, 1.0, 1.0], [1, 0.0, 2.0]]
    # A missing step: the x axis is the index.
    view = seriesview.window(store, RUN, "m:loss").to_dict()
    assert view["x"] == [0, 1, 2] and view["y"] == [2.0, None, 0.5]


def test_appends_while_the_run_logs_take_only_new_lines(tmp_path: Path) -> None:
    store = _store(tmp_path)
    path = _log(store, [_metric(i, i, acc=i) for i in range(100)])
    series.sync(store, RUN)
    pos = series.manifest(store, RUN)["pos"]
    assert pos == path.stat().st_size
    # The rest of a torn line arrives later: it counts once whole.
    _log(store, [], raw=b'{"kind": "metrics", "step": 100, "time": 100, "values": ')
    series.sync(store, RUN)
    assert seriesview.count(store, RUN, "m:acc") == 100
    _log(store, [], raw=b'{"acc": 100}}\n')
    _log(store, [_metric(i, i, acc=i) for i in range(101, 5000)])
    series.sync(store, RUN)
    got = seriesview.full(store, RUN, "m:acc")
    assert [p[1] for p in got] == list(range(5000))


@pytest.mark.parametrize("fast", [True, False], ids=["numpy", "loop"])
@pytest.mark.parametrize("n", [1, 17, 4096 + 300, 70_000])
def test_envelopes_match_a_brute_force_min_and_max(
    tmp_path: Path, n: int, fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if fast:
        pytest.importorskip("numpy")
    monkeypatch.setattr(seriesview, "FAST", fast)
    store = _store(tmp_path)
    rnd = random.Random(n)
    values = [rnd.gauss(0, 1) for _ in range(n)]
    # Logged in uneven pieces, so block summaries are made across several syncs.
    i = 0
    while i < n:
        j = min(n, i + rnd.randint(1, 5000))
        _log(store, [_metric(k, k, v=values[k]) for k in range(i, j)])
        series.sync(store, RUN)
        i = j
    for lo, hi, width in [(None, None, 200), (n / 3, n / 2, 100), (10, 10 + n / 5, 50)]:
        view = seriesview.window(store, RUN, "m:v", "step", lo, hi, width)
        assert len(view.x) <= 2 * max(width, 10) + 2
        a = 0 if lo is None else max(0, min(n, math.ceil(lo)) - 1)
        b = n if hi is None else min(n, math.floor(hi) + 2)
        inside = values[a:b]
        assert min(view.y) == pytest.approx(min(inside))
        assert max(view.y) == pytest.approx(max(inside))
        assert list(view.x) == sorted(view.x)
        assert view.total == n
        # Every point drawn is a point of the series, at its own x.
        assert all(values[int(x)] == pytest.approx(y) for x, y in zip(view.x, view.y, strict=True))


def test_a_long_series_is_read_coarse_a_short_one_whole(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _log(store, [_metric(i, 1000.0 + i, v=i % 10) for i in range(20_000)])
    series.sync(store, RUN)
    view = seriesview.window(store, RUN, "m:v", width=100)
    assert view.level >= 1 and len(view.x) <= 200
    near = seriesview.window(store, RUN, "m:v", "step", 500, 550, width=100)
    assert near.level == 0 and list(near.x[1:-1]) == list(range(500, 551))
    by_time = seriesview.window(store, RUN, "m:v", "time", 1500, 1510, width=100)
    assert list(by_time.x[1:-1]) == [1000.0 + i for i in range(500, 511)]


def test_a_dead_sync_is_cut_back_and_never_read(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _log(store, [_metric(i, i, v=i) for i in range(10)])
    series.sync(store, RUN)
    raw = series.folder(store, RUN) / "0.f64"
    with open(raw, "ab") as f:  # half a point of a sync that died
        f.write(b"\x00" * 30)
    assert seriesview.count(store, RUN, "m:v") == 10
    assert len(seriesview.full(store, RUN, "m:v")) == 10
    _log(store, [_metric(10, 10, v=10)])
    series.sync(store, RUN)
    assert [p[1] for p in seriesview.full(store, RUN, "m:v")] == list(range(11))
    assert raw.stat().st_size == 11 * series.POINT


def test_a_sync_under_way_elsewhere_is_not_waited_for(tmp_path: Path) -> None:
    import fcntl

    store = _store(tmp_path)
    _log(store, [_metric(0, 0, v=1)])
    series.sync(store, RUN)
    _log(store, [_metric(1, 1, v=2)])
    fd = os.open(series.folder(store, RUN) / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert series.sync(store, RUN, wait=False) is False
        assert seriesview.count(store, RUN, "m:v") == 1  # what was committed
    finally:
        os.close(fd)
    assert series.sync(store, RUN, wait=False) is True
    assert seriesview.count(store, RUN, "m:v") == 2


def test_check_finds_old_missing_and_damaged_series(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _log(store, [_metric(i, i, v=i) for i in range(300)])
    data = store.path("run-data", RUN)
    (data / series.OLD).write_text("{}")
    assert "old form" in (series.check(store, RUN, final=True) or "")
    series.repair(store, RUN)
    assert series.check(store, RUN, final=True) is None
    assert not (data / series.OLD).exists()
    os.truncate(series.folder(store, RUN) / "0.L1", 10)
    assert "missing points" in (series.check(store, RUN, final=True) or "")
    series.repair(store, RUN)
    assert series.check(store, RUN, final=True) is None
    _log(store, [_metric(300, 300, v=1)])
    assert series.check(store, RUN, final=False) is None  # still running: fine
    assert "lack lines" in (series.check(store, RUN, final=True) or "")
