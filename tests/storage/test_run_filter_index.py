"""`datmo ls --filter/--sort` answered from the run_values index: the same runs, in the
same order, as evaluating each condition on the JSON of every record (the way the index
answered before it had that table, kept here as the reference), over random records with
numbers, words, booleans, nulls, nested values, keys in config only, in metrics only, or in
both. Also: the index follows updates and deletions, and an index of the older layout is
filled again."""

from __future__ import annotations

import json
import os
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from datmo.core.controller import run as runs
from datmo.core.controller.project import open_project
from datmo.core.entity.base import new_id
from datmo.core.entity.run import SUCCESS, Run
from datmo.core.storage import runs as records
from datmo.core.storage.index import RunIndex
from datmo.errors import UsageError

KEYS = ["acc", "lr", "opt", "flag", "note", "deep", "x.y"]
VALUES: list[Any] = [0, 1, 2, 0.5, 0.9, 0.91, -3, 1e9, "adam", "sgd", "0.5", "", True, False, None]


def _value(rng: random.Random) -> Any:
    return rng.choice([*VALUES, {"a": 1}, [1, 2]]) if rng.random() < 0.1 else rng.choice(VALUES)


def _record(rng: random.Random, i: int) -> Run:
    config = {k: _value(rng) for k in KEYS if rng.random() < 0.5}
    metrics = {k: _value(rng) for k in KEYS if rng.random() < 0.5}
    return Run(
        id=new_id(),
        command=f"python train.py {i}",
        created_at=f"2026-01-01T00:00:{i:02d}.000000Z",
        status=SUCCESS,
        exit_code=rng.choice([0, 1, None]),
        config=config,
        metrics=metrics,
    )


def _path(key: str) -> str:
    return '$."' + key + '"'


def _records(ctx: Any) -> sqlite3.Connection:
    """The reference: every record's config and metrics as JSON text, in a table of its own."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE runs (id TEXT, config TEXT, metrics TEXT)")
    for path in (ctx.store.dir / "runs").glob("*.json"):
        doc = json.loads(path.read_text())
        db.execute(
            "INSERT INTO runs VALUES (?, ?, ?)",
            (doc["id"], json.dumps(doc["config"]), json.dumps(doc["metrics"])),
        )
    return db


def _reference(db: sqlite3.Connection, key: str, op: str, value: Any) -> list[str]:
    """The old evaluation: json_extract on every record."""
    if key.startswith("config."):
        expr, params = "json_extract(config, ?)", [_path(key[7:])]
    elif key.startswith("metrics."):
        expr, params = "json_extract(metrics, ?)", [_path(key[8:])]
    else:
        expr = "coalesce(json_extract(metrics, ?), json_extract(config, ?))"
        params = [_path(key), _path(key)]
    if value is None:
        where = f"{expr} IS {'NOT ' if op == '!=' else ''}NULL"
    else:
        where, params = f"{expr} {op} ?", [*params, int(value) if value is True else value]
    return [r[0] for r in db.execute(f"SELECT id FROM runs WHERE {where}", params)]


def _text(value: Any) -> str:
    return {None: "null", True: "true", False: "false"}.get(value, str(value))  # type: ignore[call-overload]


@pytest.fixture
def many(project: Path) -> tuple[Any, list[Run]]:
    ctx = open_project()
    rng = random.Random(20261126)
    made = [records.save(ctx.store, _record(rng, i)) for i in range(60)]
    return ctx, made


def _both(db: sqlite3.Connection, key: str) -> bool:
    """Whether a bare key names a config key of some run and a metric of some run."""
    found = [
        db.execute(
            f"SELECT count(*) FROM runs WHERE json_type({col}, ?) IS NOT NULL", [_path(key)]
        ).fetchone()[0]
        for col in ("config", "metrics")
    ]
    return all(found)


def test_filters_match_the_json_evaluation(many: tuple[Any, list[Run]]) -> None:
    ctx, _ = many
    records = _records(ctx)
    rng = random.Random(7)
    checked = refused = 0
    for _ in range(400):
        key = rng.choice([*KEYS, *(f"config.{k}" for k in KEYS), *(f"metrics.{k}" for k in KEYS)])
        op = rng.choice(["=", "!=", "<", "<=", ">", ">="])
        value = rng.choice([v for v in VALUES if v != ""])
        if value is None and op not in ("=", "!="):
            continue
        if isinstance(value, str) and value.replace(".", "", 1).isdigit():
            continue  # "0.5" typed on the command line is the number 0.5
        if isinstance(value, str) and op not in ("=", "!="):
            with pytest.raises(UsageError, match="compares numbers"):
                runs.ls(ctx, f"{key}{op}{_text(value)}")
            continue
        bare = not key.startswith(("config.", "metrics."))
        if bare and _both(records, key):  # a bare key that means both: refused
            with pytest.raises(UsageError, match="is both a config key and a metric"):
                runs.ls(ctx, f"{key}{op}{_text(value)}")
            refused += 1
            continue
        want = sorted(_reference(records, key, op, value))
        got = sorted(r.id for r in runs.ls(ctx, f"{key}{op}{_text(value)}"))
        assert got == want, f"{key}{op}{_text(value)}"
        checked += 1
    assert checked > 150 and refused > 20


def test_and_or_and_sort_match(many: tuple[Any, list[Run]]) -> None:
    ctx, made = many
    records = _records(ctx)
    a, b, c = (
        set(_reference(records, *cond))
        for cond in [("metrics.acc", ">", 0.5), ("config.lr", "<=", 1), ("config.opt", "=", "adam")]
    )
    got = {r.id for r in runs.ls(ctx, "metrics.acc>0.5 and config.lr<=1 or config.opt=adam")}
    assert got == (a & b) | c and got
    # Numbers sort as numbers (true counts as 1, as in the filter); a word sorts above them.
    by_id = {r.id: r for r in made}
    expr, key = "metrics.acc>0 and metrics.acc<1e10", "metrics.acc"
    ordered = [by_id[r.id].metrics["acc"] for r in runs.ls(ctx, expr, sort=f"{key}:asc")]
    assert ordered == sorted(ordered) and len(ordered) > 5
    newest_first = [by_id[r.id].metrics["acc"] for r in runs.ls(ctx, expr, sort=key)]
    assert newest_first == sorted(ordered, reverse=True)


def test_index_follows_updates_and_deletes(many: tuple[Any, list[Run]]) -> None:
    ctx, made = many
    target = made[0]
    records.save(ctx.store, target.evolve(metrics={"acc": 123.0}))
    assert [r.id for r in runs.ls(ctx, "metrics.acc=123")] == [target.id]
    records.save(ctx.store, target.evolve(metrics={}))
    assert runs.ls(ctx, "metrics.acc=123") == []
    records.save(ctx.store, target.evolve(metrics={"acc": 124.0}))
    (ctx.store.dir / "runs" / f"{target.id}.json").unlink()  # removed by hand
    assert runs.ls(ctx, "metrics.acc=124") == []
    idx = RunIndex(ctx.store)
    left = idx.db.execute("SELECT count(*) FROM run_values WHERE rid NOT IN (SELECT rid FROM runs)")
    assert left.fetchone()[0] == 0
    assert target.id not in idx.ids()
    idx.close()


def test_an_older_index_is_filled_again(
    many: tuple[Any, list[Run]], cli: Callable[..., Any]
) -> None:
    ctx, _ = many
    idx = RunIndex(ctx.store)
    idx.refresh()
    want = set(_reference(_records(ctx), "metrics.acc", ">=", 0.5))
    idx.db.execute("DELETE FROM run_values")  # as an index of the first layout would be
    idx.db.execute("UPDATE meta SET value = 1 WHERE key = 'schema'")
    idx.close()
    assert {r.id for r in runs.ls(ctx, "metrics.acc>=0.5")} == want and want
    listing = json.loads(cli("ls", "--format", "json", "--filter", "metrics.acc>=0.5").stdout)
    assert {d["id"] for d in listing} == want


def test_fsck_finds_and_repairs_damaged_filter_values(
    many: tuple[Any, list[Run]], cli: Callable[..., Any]
) -> None:
    ctx, _ = many
    want = {r.id for r in runs.ls(ctx, "metrics.acc>0.5")}
    idx = RunIndex(ctx.store)
    idx.db.execute("UPDATE run_values SET val = -1 WHERE key = 'acc'")
    idx.close()
    assert {r.id for r in runs.ls(ctx, "metrics.acc>0.5")} != want  # the index is trusted...
    found = cli("fsck")
    assert found.exit_code != 0 and "run index disagrees" in found.stdout  # ...fsck checks it
    assert cli("fsck", "--repair").exit_code == 0
    assert {r.id for r in runs.ls(ctx, "metrics.acc>0.5")} == want


def test_a_damaged_record_is_left_out_and_counted(
    many: tuple[Any, list[Run]], cli: Callable[..., Any]
) -> None:
    ctx, made = many
    assert len(runs.ls(ctx)) == len(made)  # indexed, then damaged by hand below
    path = ctx.store.dir / "runs" / f"{made[0].id}.json"
    good = path.read_text()
    doc = json.loads(good)
    doc["status"] = 7
    _replace(path, json.dumps(doc))
    listed = cli("ls", "--format", "json")
    assert listed.exit_code == 0
    assert made[0].id not in {d["id"] for d in json.loads(listed.stdout)}  # no stale row
    assert len(json.loads(listed.stdout)) == len(made) - 1
    assert "1 run record(s) could not be read and are not listed; run 'datmo fsck'" in (
        listed.stderr
    )
    assert runs.listing(ctx).damaged == 1  # still counted when the index is fresh
    found = cli("fsck")
    assert found.exit_code != 0 and made[0].id[:8] in found.stdout
    _replace(path, good)  # mended
    assert runs.listing(ctx).damaged == 0 and len(runs.ls(ctx)) == len(made)
    assert cli("ls").stderr == ""


def _replace(path: Path, text: str) -> None:
    # As an editor that saves by renaming (and datmo itself) does: the folder changes,
    # which is what tells the index to look again. (An edit in place is found by fsck.)
    tmp = path.with_name(".edit.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_a_process_keeps_its_index_open_and_follows_a_replaced_file(
    project: Path, cli: Callable[..., Any]
) -> None:
    ctx = open_project()
    first = records.save(
        ctx.store, Run(id=new_id(), command="a", created_at="2026-01-01T00:00:00Z")
    )
    shared = RunIndex.shared(ctx.store)
    assert RunIndex.shared(ctx.store) is shared  # one connection for the process
    # Another process (fsck, an upgrade) replaces the file: the next use opens the new one,
    # so no write goes to an unlinked copy that no reader sees.
    path = ctx.store.dir / "index.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    second = records.save(
        ctx.store, Run(id=new_id(), command="b", created_at="2026-01-02T00:00:00Z")
    )
    listed = {r.id for r in records.query(ctx.store).runs}
    assert listed == {first.id, second.id}
    other = RunIndex(ctx.store)  # what another process would read
    try:
        assert {r.id for r in other.query("", [], "created_at", [], None)} == listed
    finally:
        other.close()


@pytest.mark.parametrize("budget", [10**9, 1])
def test_a_page_read_run_by_run_matches_the_sets(
    many: tuple[Any, list[Run]], monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    """The dashboard's pages test each run in the listing's order (EXISTS probes) and,
    past a budget, fall back to the set-based query: the same runs in the same order."""
    from datmo.core.storage import index

    monkeypatch.setattr(index, "SCAN_BUDGET", budget)
    ctx, _ = many
    filters = [
        "metrics.acc>0.5 and config.lr<=1 or config.opt=adam",
        "config.opt!=adam and metrics.flag=1",
        "config.note=null or metrics.deep!=null",
        "metrics.acc>=0.9 and config.opt!=sgd and config.lr!=0",
        "status=SUCCESS and metrics.x.y<2",
        "config.opt!=adam",
    ]
    for expr in filters:
        everything = [r.id for r in records.query(ctx.store, expr).runs]
        assert everything, expr
        paged = [
            r.id
            for offset in range(0, len(everything) + 7, 7)
            for r in records.query(ctx.store, expr, limit=7, offset=offset).runs
        ]
        assert paged == everything, expr
        assert records.query(ctx.store, expr, limit=3, total=True).total == len(everything)
