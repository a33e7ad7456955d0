"""GPUs for `datmo run --executor local`: which ones the task sees, what the run records,
and GPUs that are not there refused before the task starts. nvidia-smi is the hardware's
voice here, so a stand-in script on PATH plays a machine with two GPUs (or a broken one)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import runs

LOCAL = ("--executor", "local")
SHOW = "echo CVD=${CUDA_VISIBLE_DEVICES-unset}"
H100, A100 = "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB"
TWO = f"0, GPU-aaaa1111-0000, {H100}\n1, GPU-bbbb2222-0000, {A100}\n"


@pytest.fixture
def gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Put an nvidia-smi on PATH that prints `table` (or fails with `code`)."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def install(table: str = TWO, code: int = 0) -> None:
        script = bin_dir / "nvidia-smi"
        script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{table}EOF\nexit {code}\n")
        script.chmod(0o755)

    return install


def test_gpus_by_index(project: Path, cli: Callable[..., Any], gpus: Callable[..., None]) -> None:
    gpus()
    result = cli("run", *LOCAL, "--gpus", "1", SHOW)
    assert result.exit_code == 0, result.output
    assert "CVD=1" in result.stdout
    (doc,) = runs(cli)
    assert doc["options"]["gpus"] == "1"
    assert doc["gpus"] == [A100]


def test_all_gpus_and_no_flag_record_every_gpu(
    project: Path, cli: Callable[..., Any], gpus: Callable[..., None]
) -> None:
    gpus()
    for args in (["--gpu"], []):
        result = cli("run", *LOCAL, *args, SHOW)
        assert result.exit_code == 0, result.output
        assert "CVD=unset" in result.stdout  # nothing hidden from the task
    assert [d["gpus"] for d in runs(cli)] == [[H100, A100]] * 2


@pytest.mark.parametrize(
    ("inherited", "expect_cvd", "expect_model"),
    [("1", "1", A100), ("GPU-bbbb2222", "GPU-bbbb2222", A100)],
)
def test_indexes_count_within_what_a_scheduler_allows(
    project: Path,
    cli: Callable[..., Any],
    gpus: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    inherited: str,
    expect_cvd: str,
    expect_model: str,
) -> None:
    # Slurm gave this job one GPU, the machine's second: --gpus 0 is that one, as CUDA counts.
    gpus()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", inherited)
    result = cli("run", *LOCAL, "--gpus", "0", SHOW)
    assert result.exit_code == 0, result.output
    assert f"CVD={expect_cvd}" in result.stdout
    (doc,) = runs(cli)
    assert doc["gpus"] == [expect_model]
    assert cli("run", *LOCAL, "--gpus", "1", SHOW).exit_code == 125  # only one is allowed


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ({"code": 9, "table": ""}, ["--gpu"], "nvidia-smi finds no NVIDIA GPU"),
        ({"code": 9, "table": ""}, ["--gpus", "0"], "nvidia-smi finds no NVIDIA GPU"),
        ({}, ["--gpus", "2"], "--gpus 2: there are 2 GPUs here, 0 to 1; pick from those"),
        ({}, ["--gpus", "0,5"], "there are 2 GPUs here"),
        ({"hidden": True}, ["--gpu"], "none is visible here (CUDA_VISIBLE_DEVICES='')"),
    ],
)
def test_missing_gpus_are_refused_before_the_task(
    project: Path,
    cli: Callable[..., Any],
    gpus: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    setup: dict[str, Any],
    args: list[str],
    message: str,
) -> None:
    if setup.pop("hidden", False):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    gpus(**setup)
    result = cli("run", *LOCAL, *args, "touch ran.txt")
    assert result.exit_code == 125, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not (project / "ran.txt").exists()
    assert runs(cli) == []
    assert not list((project / ".datmo" / "runs").glob("*.json"))  # no half-made record
