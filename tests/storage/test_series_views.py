"""Views of several series at once (a chart of runs overlaid) and what makes them cheap:
the same points as each series viewed alone, spikes kept, x by the step stride the
manifest notes, the level of summaries read (datmo.core.storage.seriesview, seriesfast,
seriesloop; issue 15)."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from datmo.core.storage import series, seriesview
from datmo.core.storage.store import Store


def _run(store: Store, run_id: str, points: list[tuple[Any, float]]) -> None:
    """A run that logged (step, value) pairs, at time 1000 + its index, taken in."""
    data = store.path("run-data", run_id)
    data.mkdir(parents=True, exist_ok=True)
    with open(data / "metrics.jsonl", "w") as f:
        for i, (step, value) in enumerate(points):
            doc = {"kind": "metrics", "step": step, "time": 1000.0 + i, "values": {"v": value}}
            f.write(json.dumps(doc) + "\n")
    series.sync(store, run_id)


@pytest.fixture
def store(tmp_path: Any) -> Store:
    (tmp_path / ".datmo").mkdir()
    return Store(tmp_path)


def _noise(n: int, seed: int) -> list[float]:
    rnd = random.Random(seed)
    return [rnd.gauss(0, 1) for _ in range(n)]


@pytest.fixture(params=[True, False], ids=["numpy", "loop"])
def fast(request: Any, monkeypatch: pytest.MonkeyPatch) -> bool:
    if request.param:
        pytest.importorskip("numpy")
    monkeypatch.setattr(seriesview, "FAST", request.param)
    return bool(request.param)


def test_an_overlay_gives_each_series_what_it_gives_alone(store: Store, fast: bool) -> None:
    shapes = {  # runs of one length (reduced together), and of others
        "a" * 40: [(i, v) for i, v in enumerate(_noise(40_000, 1))],
        "b" * 40: [(i, v) for i, v in enumerate(_noise(40_000, 2))],
        "c" * 40: [(3 * i + 7, v) for i, v in enumerate(_noise(20_001, 3))],
        "d" * 40: [(i * i, v) for i, v in enumerate(_noise(5_000, 4))],  # irregular steps
        "e" * 40: [(i, v) for i, v in enumerate(_noise(900, 5))],  # shown whole
        "f" * 40: [
            (i, math.nan if 2_000 <= i < 9_000 else v) for i, v in enumerate(_noise(20_000, 6))
        ],
    }
    for run_id, points in shapes.items():
        _run(store, run_id, points)
    for axis, lo, hi, width in [
        ("step", None, None, 1000),
        ("step", 500, 20_000, 300),
        ("time", None, None, 400),
    ]:
        together = seriesview.windows(
            store, [(r, "m:v", None) for r in shapes], axis, lo, hi, width
        )
        for run_id, view in zip(shapes, together, strict=True):
            alone = seriesview.window(store, run_id, "m:v", axis, lo, hi, width)
            assert view.to_dict() == alone.to_dict()
            assert len(view.x) <= 2 * width + 6
            # Every point drawn is a point of the series, at its own x.
            points = shapes[run_id]
            at = {
                (float(p[0]) if axis == "step" else 1000.0 + i): p[1] for i, p in enumerate(points)
            }
            assert all(at[x] == y for x, y in zip(view.x, view.y, strict=True))


def test_a_spike_and_a_dip_stay_in_every_view(store: Store, fast: bool) -> None:
    values = [0.001 * math.sin(i / 50) for i in range(100_000)]
    values[54_321], values[77_777] = 100.0, -50.0
    _run(store, "s" * 40, list(enumerate(values)))
    _run(store, "t" * 40, list(enumerate(_noise(100_000, 9))))
    for lo, hi in [(None, None), (50_000, 60_000), (54_000, 54_400)]:
        view, _ = seriesview.windows(
            store, [("s" * 40, "m:v", None), ("t" * 40, "m:v", None)], "step", lo, hi, 1000
        )
        assert (54_321.0, 100.0) in zip(view.x, view.y, strict=True)
        if lo is None:
            assert (77_777.0, -50.0) in zip(view.x, view.y, strict=True)


def test_the_manifest_notes_a_stride_only_while_it_holds(store: Store) -> None:
    _run(store, "g" * 40, [(5 + 10 * i, float(i)) for i in range(1_000)])
    _run(store, "h" * 40, [(i if i != 500 else 501, float(i)) for i in range(1_000)])
    _run(store, "i" * 40, [(None if i == 3 else i, float(i)) for i in range(10)])
    meta = series.manifest(store, "g" * 40)["series"]["m:v"]
    assert meta["stride"] == [5.0, 10.0]
    assert series.manifest(store, "h" * 40)["series"]["m:v"]["stride"] is None
    assert series.manifest(store, "i" * 40)["series"]["m:v"]["stride"] is None
    # Appended later: the stride is checked against the new points as well.
    with open(store.path("run-data", "g" * 40, "metrics.jsonl"), "a") as f:
        f.write(
            json.dumps({"kind": "metrics", "step": 99_999, "time": 5.0, "values": {"v": 1}}) + "\n"
        )
    series.sync(store, "g" * 40)
    assert series.manifest(store, "g" * 40)["series"]["m:v"]["stride"] is None
    # x by the stride and x read from the points agree.
    _run(store, "j" * 40, [(5 + 10 * i, float(i % 7)) for i in range(50_000)])
    view = seriesview.window(store, "j" * 40, "m:v", width=200)
    assert view.rule == (5.0, 10.0) and view.index is not None
    assert list(view.x) == [5.0 + 10.0 * i for i in view.index]
    doc = series.manifest(store, "j" * 40)
    del doc["series"]["m:v"]["stride"]  # as a manifest written before strides were noted
    older = seriesview.windows(store, [("j" * 40, "m:v", doc)], width=200)[0]
    assert older.rule is None and list(older.x) == list(view.x)


@pytest.mark.parametrize("per", [2.5, 17, 31, 32, 100, 200, 400, 600, 2_000, 5_000, 1e7])
def test_the_level_read_is_the_coarsest_within_one_and_a_half_buckets(per: float) -> None:
    level = seriesview.coarsest(per)
    size = series.FANOUT**level
    assert math.ceil(per / size) * size <= 1.5 * per or level == 0
    if level < series.LEVELS:
        bigger = series.FANOUT ** (level + 1)
        assert math.ceil(per / bigger) * bigger > 1.5 * per
