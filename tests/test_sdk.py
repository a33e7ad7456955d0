"""`import datmo`: snapshots from Python, from any folder inside a project."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import datmo
from datmo.errors import DatmoError, ProjectNotFound


def test_create_keeps_config_and_stats_with_their_types(project, tree):
    tree(project, {"train.py": "print(1)\n"})
    snap = datmo.snapshot.create(
        message="baseline",
        config={"lr": 0.01, "layers": [64, 32], "name": "mlp"},
        stats={"acc": 0.91, "epochs": 3},
        label="best",
    )
    assert snap.message == "baseline" and snap.label == "best"
    assert snap.config == {"lr": 0.01, "layers": [64, 32], "name": "mlp"}
    assert snap.metrics == {"acc": 0.91, "epochs": 3}
    on_disk = json.loads((project / ".datmo" / "snapshots" / f"{snap.id}.json").read_text())
    assert on_disk["config"]["lr"] == 0.01 and on_disk["metrics"]["epochs"] == 3
    cur = json.loads((project / ".datmo" / "current.json").read_text())
    assert cur["id"] == snap.id


def test_create_with_paths_from_outside(project, tree, cli, tmp_path):
    tree(tmp_path / "ext", {"data.csv": "a,b\n"})
    tree(project, {"train.py": "pass\n"})
    snap = datmo.snapshot.create(
        message="with data", paths=[f"{tmp_path / 'ext' / 'data.csv'}>inputs/data.csv"]
    )
    r = cli("snapshot", "checkout", snap.id, "--to", str(tmp_path / "out"), "inputs")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "inputs" / "data.csv").read_text() == "a,b\n"


def test_ls_update_and_delete(project, tree):
    ids = []
    for i in range(3):
        tree(project, {"a.py": f"v = {i}\n"})
        ids.append(datmo.snapshot.create(message=f"m{i}", config={"i": i}).id)
    listed = datmo.snapshot.ls()
    assert [s.id for s in listed] == ids[::-1]
    assert [s.config for s in listed] == [{"i": 2}, {"i": 1}, {"i": 0}]

    updated = datmo.snapshot.update(
        ids[0][:6], message="first", config={"extra": True}, stats={"acc": 1}
    )
    assert updated.id == ids[0]
    assert updated.message == "first"
    assert updated.config == {"i": 0, "extra": True}
    assert updated.metrics == {"acc": 1}
    assert datmo.snapshot.get(ids[0]).config == {"i": 0, "extra": True}

    datmo.snapshot.delete(ids[1])
    assert [s.id for s in datmo.snapshot.ls()] == [ids[2], ids[0]]
    with pytest.raises(DatmoError):
        datmo.snapshot.delete(ids[2])  # the current one
    assert [s.id for s in datmo.snapshot.ls()] == [ids[2], ids[0]]
    datmo.snapshot.delete(ids[2], force=True)
    assert [s.id for s in datmo.snapshot.ls()] == [ids[0]]


def test_the_sdk_works_from_a_subfolder(project, tree, monkeypatch):
    tree(project, {"a.py": "a\n", "experiments/exp1/run.py": "r\n"})
    monkeypatch.chdir(project / "experiments" / "exp1")
    snap = datmo.snapshot.create(message="from a subfolder", stats={"acc": 0.5})
    assert (project / ".datmo" / "snapshots" / f"{snap.id}.json").is_file()
    assert not (project / "experiments" / "exp1" / ".datmo").exists()
    assert [s.id for s in datmo.snapshot.ls()] == [snap.id]
    assert datmo.snapshot.update(snap.id, label="sub").label == "sub"
    monkeypatch.chdir(project / "experiments")
    assert datmo.snapshot.get(snap.id[:4]).label == "sub"


def test_the_sdk_outside_a_project_raises(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProjectNotFound, match="datmo init"):
        datmo.snapshot.ls()
    with pytest.raises(ProjectNotFound):
        datmo.snapshot.create(message="nowhere")
    assert list(Path(tmp_path).iterdir()) == []


def test_an_empty_message_is_refused(project, tree):
    tree(project, {"a.py": "a\n"})
    with pytest.raises(DatmoError, match="message"):
        datmo.snapshot.create(message=" ")
    assert datmo.snapshot.ls() == []


def test_runs_from_python(project, cli, monkeypatch):
    import datmo

    logs = "import datmo; [datmo.log_metrics(step=i, loss=1 / (i + 1)) for i in range(3)]"
    assert cli("run", "--executor", "local", "-c", "lr=0.1", f'python3 -c "{logs}"').exit_code == 0
    assert cli("run", "--executor", "local", "-c", "lr=0.2", "echo 'loss: 9'").exit_code == 0
    found = datmo.runs.ls(filter="lr=0.1")
    assert len(found) == 1
    (run,) = found
    assert (run.status, run.config, run.metrics) == ("SUCCESS", {"lr": 0.1}, {"loss": 1 / 3})
    assert [(s, v) for s, v, _ in run.series["loss"]] == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    assert datmo.runs.get(run.id[:8]).id == run.id
    assert [r.config["lr"] for r in datmo.runs.ls(sort="lr:asc", limit=2)] == [0.1, 0.2]
    frame = datmo.runs.to_pandas(sort="lr")
    assert list(frame["config.lr"]) == [0.2, 0.1]
    assert list(frame["metrics.loss"]) == [9, 1 / 3]
    import builtins

    real = builtins.__import__

    def no_pandas(name, *a, **kw):
        if name == "pandas":
            raise ImportError(name)
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(datmo.errors.DatmoError, match="needs pandas: pip install pandas"):
        datmo.runs.to_pandas()
