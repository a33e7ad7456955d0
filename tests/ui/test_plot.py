"""`datmo plot`: a self-contained HTML file by default, PNG/SVG through matplotlib, a
sweep's runs and its objective by each swept key, and one clear line for bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Project, datmo_cmd


def plot(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*datmo_cmd(), "plot", *args],
        cwd=project.root,
        env=project.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def data_of(html: str) -> dict:  # type: ignore[type-arg]
    block = re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S)
    assert block
    return json.loads(block[1])  # type: ignore[no-any-return]


def test_html_holds_its_scripts_and_data_and_nothing_from_elsewhere(ui_project: Project) -> None:
    runs = list(ui_project.runs.values())
    done = plot(ui_project, *runs[:2], "--metric", "loss", "-o", "two.html")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "wrote two.html (1 metrics, 2 series of 2 runs)"
    html = (ui_project.root / "two.html").read_text()
    assert not re.search(r"<script[^>]*\bsrc=|<link[^>]*\bhref=", html)
    assert "uPlot" in html
    fig = data_of(html)
    assert list(fig["metrics"]) == ["loss"]
    assert [s["run"] for s in fig["metrics"]["loss"]] == runs[:2]
    assert all(s["total"] == 300 for s in fig["metrics"]["loss"])
    # A message can never end the data block: '<' is escaped inside it.
    assert "<img" not in html.split('id="data">')[1].split("</script>")[0]
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert csp and "'unsafe-inline'" not in csp[1].split("script-src")[1].split(";")[0]


def test_default_name_all_metrics_time_axis(ui_project: Project) -> None:
    run = ui_project.runs["0.1"]
    done = plot(ui_project, run[:8], "--x", "time", "--log")
    assert done.returncode == 0, done.stderr
    fig = data_of((ui_project.root / f"plot-{run[:8]}.html").read_text())
    assert sorted(fig["metrics"]) == ["acc", "loss"] and fig["axis"] == "time" and fig["log"]


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_png_and_svg_through_matplotlib(ui_project: Project, suffix: str) -> None:
    pytest.importorskip("matplotlib")
    out = ui_project.root / f"loss.{suffix}"
    done = plot(ui_project, *ui_project.runs.values(), "-o", str(out))
    assert done.returncode == 0, done.stderr
    head = out.read_bytes()[:200]
    assert head.startswith(b"\x89PNG") if suffix == "png" else b"<svg" in out.read_bytes()[:2000]


def test_png_without_matplotlib_is_one_clear_line(ui_project: Project, tmp_path: Path) -> None:
    # A matplotlib that cannot be imported, ahead of the real one on the path.
    fake = tmp_path / "fake"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {**ui_project.env, "PYTHONPATH": f"{fake}:{ui_project.env['PYTHONPATH']}"}
    done = subprocess.run(
        [sys.executable, "-m", "datmo", "plot", ui_project.runs["0.1"], "-o", "x.png"],
        cwd=ui_project.root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr == (
        "datmo: error: PNG needs matplotlib: pip install 'datmo[plot]' "
        "(or write HTML, which needs nothing: -o plot.html)\n"
    )
    assert not (ui_project.root / "x.png").exists()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ((), "name one or more runs"),
        (("{run}", "-o", "x.pdf"), "write .html, .png or .svg"),
        (
            ("{run}", "--metric", "nope"),
            "no run here logged a series of nope (they have: acc, loss)",
        ),
        (("ffffffff",), "ffffffff"),
        (("{run}", "--sweep", "abc"), "name runs or --sweep, not both"),
    ],
)
def test_bad_input_is_one_line(ui_project: Project, args: tuple[str, ...], said: str) -> None:
    done = plot(ui_project, *(a.format(run=ui_project.runs["0.1"]) for a in args))
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and said in done.stderr, done.stderr


def test_a_sweep_is_drawn_with_its_objective_by_each_key(ui_project: Project) -> None:
    made = subprocess.run(
        [
            *datmo_cmd(),
            "sweep",
            "python3 train.py",
            "--executor",
            "local",
            "-c",
            "lr=0.2,0.4",
            "--objective",
            "acc:max",
            "--parallel",
            "2",
        ],
        cwd=ui_project.root,
        env=ui_project.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    listed = subprocess.run(
        [*datmo_cmd(), "sweep", "ls", "--format", "json"],
        cwd=ui_project.root,
        env=ui_project.env,
        capture_output=True,
        text=True,
    )
    sweep = json.loads(listed.stdout)[0]["id"]
    done = plot(ui_project, "--sweep", sweep[:8], "-o", "sweep.html")
    assert done.returncode == 0, done.stderr
    fig = data_of((ui_project.root / "sweep.html").read_text())
    assert list(fig["metrics"]) == ["acc"] and len(fig["metrics"]["acc"]) == 2
    (scatter,) = fig["scatter"]
    assert scatter["key"] == "lr" and [p[0] for p in scatter["points"]] == [0.2, 0.4]
