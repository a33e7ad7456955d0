"""Metrics belong to the run that made them: a stats.json counts only if the run's task
wrote it, a RUNNING run shows its latest values, captured lines that are config are not
metrics, and each metric's series keeps its minimum and maximum."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import run_doc, runs, wait_for

from datmo.core.controller.project import open_project
from datmo.core.entity.base import new_id, utcnow
from datmo.core.entity.run import Run
from datmo.core.storage import runs as records
from datmo.core.storage.index import RunIndex

LOCAL = ("--executor", "local")
WRITE_STATS = "import json; json.dump({'trees': 10}, open('stats.json', 'w'))"


def test_an_old_stats_json_is_not_credited_to_a_later_run(
    project: Path, cli: Callable[..., Any]
) -> None:
    first = cli("run", *LOCAL, f'python3 -c "{WRITE_STATS}"')
    assert first.exit_code == 0, first.output
    second = cli("run", *LOCAL, "echo 'acc: 0.5'")  # writes no stats.json
    assert second.exit_code == 0, second.output
    later, earlier = runs(cli)
    assert earlier["metrics"] == {"trees": 10}
    assert later["metrics"] == {"acc": 0.5}
    after = json.loads(
        cli("snapshot", "inspect", later["after_snapshot_id"], "--format", "json").stdout
    )
    assert (after[0] if isinstance(after, list) else after)["metrics"] == {"acc": 0.5}


def test_the_same_content_written_again_counts(project: Path, cli: Callable[..., Any]) -> None:
    # A deterministic task writes the very same bytes: decided by the file's stat, not its
    # content.
    for _ in range(2):
        result = cli("run", *LOCAL, f'python3 -c "{WRITE_STATS}"')
        assert result.exit_code == 0, result.output
    assert [r["metrics"] for r in runs(cli)] == [{"trees": 10}, {"trees": 10}]


def test_a_stopped_run_is_not_credited_with_the_old_stats(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    tree(project, {"stats.json": '{"trees": 50}'})  # from a run long ago
    started = cli(
        "run", "-d", *LOCAL, 'python3 -c "import datmo; datmo.log_metrics(trees=5)"; sleep 30'
    )
    assert started.exit_code == 0, started.output
    run_id = started.stdout.strip().splitlines()[-1]
    wait_for(lambda: run_doc(cli, run_id)["metrics"], "the logged value in the record")
    assert cli("stop", run_id[:8]).exit_code == 0
    assert run_doc(cli, run_id)["metrics"] == {"trees": 5}


LIVE = """\
import datmo, time
for step in range(3):
    datmo.log_metrics(step=step, loss=1.0 / (step + 1))
print("acc: 0.75", flush=True)
time.sleep(30)
"""


def test_a_running_run_shows_its_latest_values(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    tree(project, {"live.py": LIVE})
    started = cli("run", "-d", *LOCAL, "python3 live.py")
    assert started.exit_code == 0, started.output
    run_id = started.stdout.strip().splitlines()[-1]
    doc = wait_for(
        lambda: (d := run_doc(cli, run_id))["metrics"].get("acc") and d, "live metrics", 15
    )
    assert doc["status"] == "RUNNING"
    assert doc["metrics"] == {"loss": 1 / 3, "acc": 0.75}
    assert doc["metric_ranges"]["loss"] == [1 / 3, 1.0]
    filtered = cli("ls", "--filter", "loss.max=1 and status=RUNNING", "--format", "json")
    assert [d["id"] for d in json.loads(filtered.stdout)] == [run_id]
    assert cli("stop", run_id[:8]).exit_code == 0
    assert run_doc(cli, run_id)["metrics"] == {"loss": 1 / 3, "acc": 0.75}


def test_captured_config_keys_are_not_metrics(project: Path, cli: Callable[..., Any]) -> None:
    command = "echo 'Downloading: 100'; echo 'seed: 42'; echo 'lr: 1e-3'; echo 'acc: 0.5'"
    result = cli("run", *LOCAL, "-c", "seed=42", "-c", "lr=0.001", command)
    assert result.exit_code == 0, result.output
    (doc,) = runs(cli)
    assert doc["metrics"] == {"acc": 0.5}
    assert doc["config"] == {"seed": 42, "lr": 0.001}
    assert cli("ls", "--filter", "seed=42", "--format", "json").exit_code == 0  # not ambiguous


def test_logged_values_win_over_captured_ones(project: Path, cli: Callable[..., Any]) -> None:
    command = (
        "echo 'acc: 0.1'; python3 -c 'import datmo; datmo.log_metrics(acc=0.9)'; echo 'acc: 0.2'"
    )
    result = cli("run", *LOCAL, command)
    assert result.exit_code == 0, result.output
    assert runs(cli)[0]["metrics"] == {"acc": 0.9}


def test_series_extremes_sort_and_filter(project: Path, cli: Callable[..., Any]) -> None:
    # The best epoch's checkpoint is the one kept: rank by val_loss.min, not the last value.
    for losses in ([0.9, 0.2, 0.8], [0.5, 0.4, 0.3]):
        logs = "; ".join(f"datmo.log_metrics(step={i}, val_loss={v})" for i, v in enumerate(losses))
        result = cli("run", *LOCAL, f'python3 -c "import datmo; {logs}"')
        assert result.exit_code == 0, result.output
    second, first = runs(cli)
    assert first["metric_ranges"] == {"val_loss": [0.2, 0.9]}
    assert (first["metrics"], second["metrics"]) == ({"val_loss": 0.8}, {"val_loss": 0.3})
    best = json.loads(cli("ls", "--sort", "val_loss.min:asc", "--format", "json").stdout)
    assert [d["id"] for d in best] == [first["id"], second["id"]]
    low = json.loads(cli("ls", "--filter", "metrics.val_loss.min<0.3", "--format", "json").stdout)
    assert [d["id"] for d in low] == [first["id"]]


def test_a_writers_note_is_trusted_at_once(project: Path) -> None:
    # A RUNNING run rewrites its record every second; a listing must not rescan every
    # record after each write. The writer's note of the folder is trusted at once...
    ctx = open_project()
    run = Run(id=new_id(), command="true", created_at=utcnow())
    records.save(ctx.store, run)
    idx = RunIndex(ctx.store)
    try:
        assert idx.is_fresh()
        # ...while a note taken by a reader's own scan waits out the racy window, and a
        # record written by anything else is found by the folder's change.
        other = run.evolve(id=new_id())
        path = ctx.store.dir / "runs" / f"{other.id}.json"
        path.write_text(json.dumps(other.to_dict()))
        assert not idx.is_fresh()
        assert idx.refresh() == 1
        assert not idx.is_fresh()  # noted by the scan, within the racy window
        time.sleep(0.05)
        assert idx.refresh() == 0  # the next look finds nothing new, and notes so...
        assert idx.is_fresh()  # ...past the racy window now
    finally:
        idx.close()
