"""datmo export mlflow into MLflow's SQLite store (its file store is deprecated)."""

from __future__ import annotations

import json
import sys

import pytest

mlflow = pytest.importorskip("mlflow", reason="mlflow-skinny is in the dev extra")


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "1")


def _run(cli, tree, project, code):
    tree(project, {"train.py": code})
    result = cli("run", "--executor", "local", "-c", "lr=0.01", "-c", "layers=3", "python train.py")
    assert result.exit_code == 0, result.output
    docs = json.loads(cli("ls", "--format", "json").stdout)
    return docs[0]["id"]


TRAIN = """
import datmo
for step in range(1500):
    datmo.log_metrics(step=step, loss=1.0 / (step + 1))
datmo.log_metrics(acc=0.75)
"""


def test_export_writes_config_series_status_and_ids_once(cli, tree, project, tmp_path):
    rid = _run(cli, tree, project, TRAIN)
    cli("tag", rid[:8], "best")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = cli("export", "mlflow", "--tracking-uri", uri, "--experiment", "exp1")
    assert done.exit_code == 0, done.output
    assert "exported 1 run(s) to experiment 'exp1'" in done.stdout
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("exp1")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.params == {"lr": "0.01", "layers": "3"}
    assert run.data.tags["datmo.run_id"] == rid
    assert run.data.tags["datmo.tag.best"] == "true"
    assert run.data.tags["datmo.after_snapshot_id"]
    assert run.info.status == "FINISHED" and run.info.end_time >= run.info.start_time
    history = client.get_metric_history(run.info.run_id, "loss")
    assert len(history) == 1500  # more than one batch of 1,000
    assert sorted(m.step for m in history) == list(range(1500))
    assert run.data.metrics["acc"] == 0.75

    again = cli("export", "mlflow", "--tracking-uri", uri, "--experiment", "exp1", rid[:8])
    assert (
        again.exit_code == 0
        and "exported 0 run(s)" in again.stdout
        and "1 exported before" in again.stdout
    )
    (same,) = client.search_runs([exp.experiment_id])
    assert same.info.run_id == run.info.run_id
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 1500


def test_an_export_cut_short_is_made_again(cli, tree, project, tmp_path):
    rid = _run(cli, tree, project, "print('acc: 0.5')\n")
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment("test")
    client.create_run(exp_id, tags={"datmo.run_id": rid})  # as if killed half way
    assert cli("export", "mlflow", "--tracking-uri", uri).exit_code == 0
    runs = client.search_runs([exp_id])
    assert len(runs) == 1 and runs[0].data.tags.get("datmo.exported") == "1"


def test_without_mlflow_the_error_is_one_line(cli, project, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    result = cli("export", "mlflow", "--tracking-uri", f"sqlite:///{tmp_path / 'x.db'}")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "datmo: error: exporting to MLflow needs MLflow: pip install 'datmo[mlflow]'"
    )
