"""The task gets exactly the config its run records: $DATMO_CONFIG and its file,
datmo.config(), placeholders in the command, and the config file itself."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import runs

from datmo.core.task.command import expand, placeholders
from datmo.errors import UsageError

LOCAL = ("--executor", "local")
# Prints every way the task can read its config, as JSON lines.
SHOW = """\
import json, os, sys
import datmo
print(json.dumps({
    "env": json.loads(os.environ["DATMO_CONFIG"]) if "DATMO_CONFIG" in os.environ else None,
    "file": json.load(open(os.environ["DATMO_CONFIG_FILE"])),
    "sdk": datmo.config(),
    "lr": datmo.config("lr", "default"),
    "missing": datmo.config("nope", 7),
    "project_file": json.load(open("config.json")) if os.path.exists("config.json") else None,
    "argv": sys.argv[1:],
}))
"""


def shown(result: Any) -> dict[str, Any]:
    line = next(x for x in result.stdout.splitlines() if x.startswith("{"))
    doc: dict[str, Any] = json.loads(line)
    return doc


def test_the_task_sees_the_config_its_run_records(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    tree(project, {"show.py": SHOW, "config.json": '{"lr": 0.1, "trees": 50, "seed": 1}\n'})
    result = cli("run", *LOCAL, "-c", "trees=7", "-c", "lr=1e-3", "python3 show.py")
    assert result.exit_code == 0, result.output
    (doc,) = runs(cli)
    want = {"lr": 0.001, "trees": 7, "seed": 1}
    assert doc["config"] == want
    got = shown(result)
    assert got["env"] == got["file"] == got["sdk"] == got["project_file"] == want
    assert (got["lr"], got["missing"]) == (0.001, 7)
    before = json.loads(
        cli("snapshot", "inspect", doc["before_snapshot_id"], "--format", "json").stdout
    )
    assert (before[0] if isinstance(before, list) else before)["config"] == want
    # The merged file stays in the working tree, said in one line.
    assert json.loads((project / "config.json").read_text()) == want
    assert "config.json: wrote -c trees=7 -c lr=0.001 into it for this run" in result.stderr


def test_a_project_without_a_config_file_gets_none(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    tree(project, {"show.py": SHOW})
    result = cli("run", *LOCAL, "-c", "lr=0.5", "python3 show.py")
    assert result.exit_code == 0, result.output
    assert not (project / "config.json").exists()
    assert shown(result)["sdk"] == {"lr": 0.5}
    assert "wrote" not in result.stderr


def test_unchanged_values_leave_the_file_as_it_was(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    text = '{\n    "lr": 0.1,\n    "trees": 5\n}\n'
    tree(project, {"config.json": text})
    result = cli("run", *LOCAL, "-c", "lr=0.1", "true")
    assert result.exit_code == 0, result.output
    assert (project / "config.json").read_text() == text
    assert "wrote" not in result.stderr


YAML = """\
# training settings
lr: 0.1        # the learning rate
layers:
  - 64
  - 32
name: "resnet"  # keep this comment
epochs: 5
"""


def test_a_yaml_config_file_keeps_its_layout_and_comments(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    tree(project, {"params.yaml": YAML, "show.py": SHOW})
    result = cli(
        "run",
        *LOCAL,
        "--config-file",
        "params.yaml",
        "-c",
        "lr=0.01",
        "-c",
        "layers=[128]",
        "-c",
        "dropout=0.5",
        "python3 show.py",
    )
    assert result.exit_code == 0, result.output
    assert (project / "params.yaml").read_text() == (
        "# training settings\n"
        "lr: 0.01        # the learning rate\n"
        "layers: [128]\n"
        'name: "resnet"  # keep this comment\n'
        "epochs: 5\n"
        "dropout: 0.5\n"
    )
    want = {"lr": 0.01, "layers": [128], "name": "resnet", "epochs": 5, "dropout": 0.5}
    assert runs(cli)[0]["config"] == want == shown(result)["sdk"]


def test_a_config_file_outside_the_project_is_not_rewritten(
    project: Path, cli: Callable[..., Any], tmp_path: Path
) -> None:
    outside = tmp_path / "shared.json"
    outside.write_text('{"lr": 0.1}')
    result = cli("run", *LOCAL, "--config-file", str(outside), "-c", "lr=0.2", "true")
    assert result.exit_code == 125
    assert "is outside the project" in result.stderr and result.stderr.count("\n") == 1
    assert outside.read_text() == '{"lr": 0.1}'
    assert runs(cli) == []
    # Without a change it is read, and not written.
    fine = cli("run", *LOCAL, "--config-file", str(outside), "true")
    assert fine.exit_code == 0, fine.output
    assert runs(cli)[0]["config"] == {"lr": 0.1}


def test_placeholders_are_filled_in_as_one_word_each(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    tree(project, {"show.py": SHOW})
    result = cli(
        "run",
        *LOCAL,
        "-c",
        "lr=1e-3",
        "-c",
        "name=my model",
        "-c",
        "lr_str=1; touch pwned",
        "-c",
        "flag=True",
        "python3 show.py --lr {lr} --name {name} {lr_str} {flag} {{lr}} ${HOME:+x} '{print $1}'",
    )
    assert result.exit_code == 0, result.output
    assert shown(result)["argv"] == [
        "--lr",
        "1e-3",
        "--name",
        "my model",
        "1; touch pwned",
        "true",
        "{lr}",
        "x",
        "{print $1}",
    ]
    assert not (project / "pwned").exists()
    (doc,) = runs(cli)
    assert doc["command"].startswith("python3 show.py --lr 1e-3 --name 'my model' '1; touch")
    assert doc["command_template"].startswith("python3 show.py --lr {lr}")


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ("python3 show.py --lr {nope}", "the placeholder {nope} names no config key"),
        ("python3 show.py --name '{name}'", "the placeholder {name} is inside quotes"),
        ('python3 show.py --name "x {name}"', "the placeholder {name} is inside quotes"),
    ],
)
def test_a_bad_placeholder_is_refused_before_anything_is_made(
    project: Path, cli: Callable[..., Any], command: str, says: str
) -> None:
    result = cli("run", *LOCAL, "-c", "name=x", command)
    assert result.exit_code == 125
    assert says in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert runs(cli) == []
    assert not list((project / ".datmo" / "snapshots").iterdir())


@pytest.mark.parametrize(
    "command",
    [
        "awk '{print $1}' f",
        "echo ${HOME}",
        "docker inspect --format '{{.Id}}' x",
        "echo {}",
        "a {1}",
    ],
)
def test_commands_that_worked_keep_working(command: str) -> None:
    assert placeholders(command) == []
    assert expand(command, {}, {}) == command


def test_an_escaped_quote_does_not_open_quotes() -> None:
    assert expand(r"echo \' {a}", {"a": 1}, {}) == r"echo \' 1"
    with pytest.raises(UsageError):
        expand(r'echo "\" {a}"', {"a": 1}, {})


def test_a_large_config_reaches_the_task_through_its_file(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    big = {f"k{i}": "x" * 1000 for i in range(200)}  # 200 kB: over one variable's limit
    tree(project, {"show.py": SHOW, "config.json": json.dumps(big)})
    result = cli("run", *LOCAL, "python3 show.py")
    assert result.exit_code == 0, result.output
    got = shown(result)
    assert got["env"] is None and got["file"] == got["sdk"] == big


def test_the_task_logging_another_value_is_recorded_and_said(
    project: Path, cli: Callable[..., Any], tree: Any
) -> None:
    # A script whose own --lr flag beats -c lr=5, and says so with log_config.
    tree(project, {"train.py": "import datmo\ndatmo.log_config(lr=20, extra=1)\n"})
    result = cli("run", *LOCAL, "-c", "lr=5", "python3 train.py")
    assert result.exit_code == 0, result.output
    (doc,) = runs(cli)
    assert doc["config"] == {"lr": 20, "extra": 1}
    assert doc["config_overridden"] == {"lr": [5, 20]}
    assert "config overridden by the task: lr=5 -> 20" in result.stdout
    logs = cli("logs", doc["id"][:8])
    assert "config overridden by the task: lr=5 -> 20" in logs.stdout


def test_a_run_started_in_a_subfolder_starts_there(
    project: Path, cli: Callable[..., Any], tree: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree(project, {"src": {"deep": {"here.txt": "x\n"}}})
    monkeypatch.chdir(project / "src" / "deep")
    result = cli("run", *LOCAL, "pwd; cat here.txt")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == str(project / "src" / "deep")
    (doc,) = runs(cli)
    assert doc["options"]["cwd"] == "src/deep"
    again = cli("rerun", doc["id"][:8])  # in the same subfolder of its own copy
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines()[0].endswith("/src/deep")
    assert f"{project}/.datmo/work/" in again.stdout


def test_the_local_executor_adds_the_sdk_to_a_pythonpath_of_yours(
    project: Path, cli: Callable[..., Any], tree: Any, tmp_path: Path
) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "mylib.py").write_text("X = 42\n")
    script = "import mylib, datmo; print('x', mylib.X, callable(datmo.config))"
    result = cli("run", *LOCAL, "-e", f"PYTHONPATH={lib}", f'python3 -c "{script}"')
    assert result.exit_code == 0, result.output
    assert "x 42 True" in result.stdout
    assert os.environ.get("PYTHONPATH", "") != str(lib)
