"""Metrics and config a task reports: `key: number` output lines, the metrics file the
task-side `datmo` shim appends to, and how the two are merged into a run's record."""

from __future__ import annotations

import ast
import importlib.util
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from datmo.core.task.metrics import MetricsReader, OutputCapture, collect
from datmo.core.task.supervisor import Redactor
from datmo.task_sdk import PATH as SDK_PATH

REPO = Path(__file__).resolve().parents[2]
SHIM = SDK_PATH / "datmo" / "__init__.py"


def capture_into(found: list[tuple[str, Any, Any]]) -> OutputCapture:
    def sink(values: dict[str, Any], step: Any, when: float) -> None:
        found.extend((k, v, step) for k, v in values.items())

    return OutputCapture(sink)


def captured(*chunks: bytes) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any, Any]] = []
    capture = capture_into(found)
    for chunk in chunks:
        capture.feed(chunk)
    capture.close()
    return [(key, value) for key, value, _ in found]


# -- output lines ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"loss: 0.25", [("loss", 0.25)]),
        (b"epoch: 3", [("epoch", 3)]),
        (b"val_acc : 91", [("val_acc", 91)]),
        (b"   acc:0.5   ", [("acc", 0.5)]),
        (b"lr: 1e-3", [("lr", 0.001)]),
        (b"delta: -2", [("delta", -2)]),
        (b"x: .5", [("x", 0.5)]),
        (b"train/loss: 1.5", [("train/loss", 1.5)]),
        (b"time: 12:30", []),
        (b"note: see 3 files", []),
        (b"Epoch 1/3 loss: 0.2 acc: 0.9", []),
        (b"loss = 0.2", []),
        (b"loss: nan", []),
        (b": 3", []),
        (b"\xff\xfe: 1", []),
        (b"Downloading: 100", []),  # progress, not a metric
        (b"Loading: 3", []),
        (b"epoch 3/10 - acc: 0.91", [("acc", 0.91)]),
        (b"loss: 0.3, acc: 0.9", [("loss", 0.3), ("acc", 0.9)]),
        (b"loss: 0.3 | acc: 0.9", [("loss", 0.3), ("acc", 0.9)]),
        (
            b"1875/1875 [==============================] - 3s 1ms/step - loss: 0.2950 - "
            b"accuracy: 0.9147 - val_loss: 0.1470 - val_accuracy: 0.9560",
            [("loss", 0.295), ("accuracy", 0.9147), ("val_loss", 0.147), ("val_accuracy", 0.956)],
        ),
        (b"note: 3, see 4 files", []),  # one pair among words: not a line of metrics
        (b"retries - loss: 2", []),
        (b"10/10 [===] - ETA: 0s - loss: 0.5\r10/10 [===] - 1s - loss: 0.4", [("loss", 0.4)]),
    ],
)
def test_output_line(line: bytes, expected: list[tuple[str, Any]]) -> None:
    got = captured(line + b"\n")
    assert got == expected
    for (_, value), (_, want) in zip(got, expected, strict=True):
        assert type(value) is type(want)  # 3 stays an int, 0.5 a float


def test_lines_split_across_chunks() -> None:
    assert captured(b"lo", b"ss: 0.", b"5\nacc", b": 1\n") == [("loss", 0.5), ("acc", 1)]


def test_crlf_and_last_line_without_newline() -> None:
    assert captured(b"loss: 1\r\n", b"acc: 0.9") == [("loss", 1), ("acc", 0.9)]


def test_endless_line_is_not_a_metric() -> None:
    assert captured(b"x" * 70000, b": 1\n", b"ok: 2\n") == [("ok", 2)]


def test_an_epoch_line_gives_the_step_of_the_values_after_it() -> None:
    found: list[tuple[str, Any, Any]] = []
    capture = capture_into(found)
    capture.feed(b"loss: 9\nEpoch 1/3\nloss: 0.5\nEpoch 2/3\n")
    capture.feed(b"3/3 [===] - 1s - loss: 0.25\nstep 7 - acc: 1\n")
    capture.close()
    assert found == [("loss", 9, None), ("loss", 0.5, 1), ("loss", 0.25, 2), ("acc", 1, 7)]


def test_capture_sees_output_with_secrets_redacted_across_chunks() -> None:
    log = io.BytesIO()
    found: list[tuple[str, Any, Any]] = []
    capture = capture_into(found)
    out = Redactor(log, ["s3cr3tvalue"], capture)
    for chunk in (b"token=s3c", b"r3tv", b"alue\nacc: 0.5\nlast s3cr3tval", b"ue"):
        out.feed(chunk)
    out.close()
    capture.close()
    assert log.getvalue() == b"token=***\nacc: 0.5\nlast ***"
    assert [(k, v) for k, v, _ in found] == [("acc", 0.5)]


# -- merging the metrics file and the output ----------------------------------------------------


def _line(kind: str, values: dict[str, Any], when: float, step: Any = None) -> str:
    doc: dict[str, Any] = {"kind": kind, "time": when, "values": values}
    if step is not None:
        doc["step"] = step
    return json.dumps(doc)


def test_collect_series_last_value_and_config(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        "\n".join(
            [
                _line("config", {"lr": 0.1, "opt": "sgd"}, 1.0),
                _line("metrics", {"loss": 2.0}, 2.0, step=0),
                _line("metrics", {"loss": 1.0, "acc": 0.5}, 3.0, step=1),
                "",
                '{"kind": "metrics", "values": [1, 2]}',
                "not json at all",
                _line("config", {"lr": 0.2}, 4.0),
                _line("captured", {"acc": 0.75, "epochs": 3}, 4.5),
                _line("metrics", {"loss": 0.5}, 5.0, step=2),
                '{"kind": "metrics", "time": 6.0, "values": {"loss": 0.1',  # torn by a kill
            ]
        )
    )
    got = collect(path)
    assert got.config == {"lr": 0.2, "opt": "sgd"}
    # acc was logged with the SDK: the output's acc is not used; epochs only came from it.
    assert got.metrics == {"loss": 0.5, "acc": 0.5, "epochs": 3}
    assert got.series["loss"] == [[0, 2.0, 2.0], [1, 1.0, 3.0], [2, 0.5, 5.0]]
    assert got.series["acc"] == [[1, 0.5, 3.0]]
    assert got.ranges == {"loss": [0.5, 2.0], "acc": [0.5, 0.5], "epochs": [3, 3]}


def test_a_captured_key_that_is_a_config_key_is_not_a_metric(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        "\n".join(
            [
                _line("captured", {"seed": 42, "lr": 0.001, "acc": 0.9}, 1.0),
                _line("config", {"width": 64}, 2.0),
                _line("captured", {"width": 64}, 3.0),
            ]
        )
        + "\n"
    )
    got = collect(path, config_keys={"seed", "lr"})  # given: seed, lr; logged: width
    assert got.metrics == {"acc": 0.9}


def test_the_reader_takes_in_only_what_was_appended(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    reader = MetricsReader(path)
    assert not reader.read()  # no file yet
    with open(path, "a") as f:
        f.write(_line("metrics", {"loss": 1}, 1.0) + "\n" + '{"kind": "metr')
    assert reader.read() and reader.result().metrics == {"loss": 1}
    with open(path, "a") as f:
        f.write('ics", "time": 2.0, "values": {"loss": 0.5}}\n')  # the torn line, whole now
    assert reader.read() and reader.result().metrics == {"loss": 0.5}
    assert not reader.read()
    assert reader.result().ranges == {"loss": [0.5, 1]}


def test_collect_without_a_metrics_file(tmp_path: Path) -> None:
    got = collect(tmp_path / "missing.jsonl")
    assert got.metrics == {} and got.config == {} and got.series == {}


# -- the task-side shim ---------------------------------------------------------------------------


@pytest.fixture
def shim(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[ModuleType, Path]:
    """The task-side `datmo` module, loaded under another name beside the real package."""
    spec = importlib.util.spec_from_file_location("datmo_task_shim", SHIM)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = tmp_path / "metrics.jsonl"
    monkeypatch.setenv("DATMO_METRICS_FILE", str(path))
    return module, path


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_shim_appends_one_line_per_call(shim: tuple[ModuleType, Path]) -> None:
    sdk, path = shim
    sdk.log_config(lr=0.01, layers=4)
    sdk.log_metrics(step=1, loss=0.5, acc=1)
    sdk.log_metrics(loss=0.25)
    first, second, third = _records(path)
    assert (first["kind"], first["values"]) == ("config", {"lr": 0.01, "layers": 4})
    assert (second["kind"], second["step"], second["values"]) == (
        "metrics",
        1,
        {"loss": 0.5, "acc": 1},
    )
    assert "step" not in third
    got = collect(path, [])
    assert got.config == {"lr": 0.01, "layers": 4}
    assert got.metrics == {"loss": 0.25, "acc": 1}


def test_shim_makes_values_plain(shim: tuple[ModuleType, Path]) -> None:
    sdk, path = shim

    class Scalar:  # what numpy scalars and 0-d tensors look like
        def __init__(self, value: float) -> None:
            self.value = value

        def item(self) -> float:
            return self.value

    sdk.log_metrics(
        step=Scalar(7),
        a=Scalar(0.5),
        b=float("nan"),
        c=float("inf"),
        d=None,
        e=True,
        f=object,
    )
    (record,) = _records(path)
    assert record["step"] == 7
    values = record["values"]
    assert values["a"] == 0.5
    assert values["b"] == "nan"
    assert values["c"] == "inf"
    assert values["d"] is None
    assert values["e"] is True
    assert isinstance(values["f"], str)


def test_shim_outside_a_run_warns_once(
    shim: tuple[ModuleType, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sdk, path = shim
    monkeypatch.delenv("DATMO_METRICS_FILE")
    sdk.log_metrics(loss=1)
    sdk.log_config(lr=1)
    err = capsys.readouterr().err
    assert err.count("not inside a datmo run") == 1
    assert not path.exists()


def test_shim_uses_the_standard_library_only() -> None:
    tree = ast.parse(SHIM.read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


def test_shim_lines_stay_whole_with_several_writers(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    code = (
        "import datmo, sys\n"
        "for i in range(300):\n"
        "    datmo.log_metrics(step=i, writer=int(sys.argv[1]), pad='x' * 200)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SDK_PATH), "DATMO_METRICS_FILE": str(path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(n)], env=env, cwd=tmp_path)
        for n in range(4)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    records = _records(path)
    assert len(records) == 1200
    assert {r["values"]["writer"] for r in records} == {0, 1, 2, 3}


def test_import_datmo_in_a_task_is_the_shim(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(SDK_PATH)}
    out = subprocess.run(
        [sys.executable, "-c", "import datmo; print(datmo.__file__, datmo.__all__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(SHIM) in out
    assert "log_metrics" in out and "log_config" in out


# -- in a run (local executor) ---------------------------------------------------------------------

TRAIN = """\
import datmo
datmo.log_config(lr=0.1)
for i in range(3):
    datmo.log_metrics(step=i, loss=1.0 / (i + 1))
print("acc: 0.9")
print("epochs: 3")
"""


def _run(cli: Callable[..., Any], *args: str) -> dict[str, Any]:
    result = cli("run", "--executor", "local", *args)
    assert result.exit_code == 0, result.output
    (doc,) = json.loads(cli("ls", "--format", "json").stdout)
    return dict(doc)


def test_run_metrics_series_and_config(project: Path, cli: Callable[..., Any], tree: Any) -> None:
    tree(project, {"train.py": TRAIN})
    doc = _run(cli, "-c", "batch=32", "-c", "lr=0.5", "python3 train.py")
    assert doc["metrics"] == {"loss": 1.0 / 3, "acc": 0.9, "epochs": 3}
    assert isinstance(doc["metrics"]["epochs"], int)
    assert isinstance(doc["metrics"]["acc"], float)
    assert doc["config"] == {"batch": 32, "lr": 0.1}  # what the task logged wins
    assert [(s, v) for s, v, _ in stored_series(project, doc["id"], "loss")] == [
        (0, 1.0),
        (1, 0.5),
        (2, 1.0 / 3),
    ]
    inspected = json.loads(
        cli("snapshot", "inspect", doc["after_snapshot_id"], "--format", "json").stdout
    )
    after = inspected[0] if isinstance(inspected, list) else inspected
    assert after["config"] == doc["config"]
    assert after["metrics"] == doc["metrics"]
    before = json.loads(
        cli("snapshot", "inspect", doc["before_snapshot_id"], "--format", "json").stdout
    )
    before = before[0] if isinstance(before, list) else before
    assert before["config"] == {"batch": 32, "lr": 0.5}


def test_no_capture_keeps_only_logged_metrics(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    tree(project, {"train.py": TRAIN})
    doc = _run(cli, "--no-capture", "python3 train.py")
    assert doc["metrics"] == {"loss": 1.0 / 3}
    assert doc["options"]["capture"] is False


def test_output_only_metrics(project: Path, cli: Callable[..., Any]) -> None:
    doc = _run(cli, "echo 'acc: 0.5'; echo 'acc: 0.75'; echo 'time: 12:30'")
    assert doc["metrics"] == {"acc": 0.75}
    assert [v for _, v, _ in stored_series(project, doc["id"], "acc")] == [0.5, 0.75]


def test_run_without_metrics_has_none(project: Path, cli: Callable[..., Any]) -> None:
    doc = _run(cli, "echo nothing to report")
    assert doc["metrics"] == {}
    from datmo.core.storage import seriesview
    from datmo.core.storage.store import Store

    assert seriesview.names(Store(project), doc["id"]) == []


def stored_series(project: Path, run_id: str, key: str) -> list[list[Any]]:
    """A metric's series as the run's end left it in the store (the logged one first)."""
    from datmo.core.storage import seriesview
    from datmo.core.storage.store import Store

    store = Store(project)
    names = seriesview.names(store, run_id)
    name = f"m:{key}" if f"m:{key}" in names else f"c:{key}"
    return seriesview.full(store, run_id, name)
