"""The dashboard in headless Chromium (Debian's, driven by Playwright): the runs table at
100,000 runs against 100, a chart of 1,000,000 steps against 1,000, 20 runs of 100,000
steps overlaid against one, and the runs table's first rows against MLflow's UI over
the same 10,000 runs. Every pair is measured in one run, interleaved, in the same
browser.

Run records are written through the storage layer (benchmarks.runs.make_runs), and
series through metrics.jsonl and the series store, as a run's own logging would.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.context import Context
from benchmarks.harness import Row, Section, Skip, fmt_seconds, interleaved, log
from benchmarks.runs import QUIET_MLFLOW, _in_mlflow_venv, _init_project, ensure_mlflow, make_runs
from benchmarks.tools import remove

FILTER = "acc>0.9 and lr=0.01"
FILTER2 = "acc>0.8 and lr=0.1"


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        raise Skip("no chromium: run 'make sysdeps' (scripts/browser.sh)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise Skip("playwright is missing: 'make install' puts the dev extra in .venv") from None
    return path


@contextmanager
def dashboard(ctx: Context, proj: Path) -> Iterator[str]:
    """`datmo ui` on proj: its URL with the token, until the block ends."""
    proc = subprocess.Popen(
        ctx.tools.datmo_cmd("ui", "--no-browser", "--port", "0"),
        cwd=proj,
        env=ctx.tools.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        url = ""
        deadline = time.time() + 60
        while not url and time.time() < deadline:
            m = re.search(r"http://\S+token=\w+", proc.stdout.readline())
            url = m[0] if m else ""
        if not url:
            raise RuntimeError("datmo ui did not start")
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


@contextmanager
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def _signed_in(b: Any, url: str) -> Any:
    page = b.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(url)
    page.wait_for_selector("#runs tbody tr")
    return page


def _first_rows(page: Any, base: str) -> float:
    """From navigation to the runs table's first page drawn."""
    page.goto("about:blank")
    started = time.perf_counter()
    page.goto(base + "/#/runs")
    page.wait_for_selector("#runs tbody tr")
    return time.perf_counter() - started


def _filter_typed(page: Any, text: str) -> float:
    """From a filter typed (and applied) to the table drawn again."""
    before = page.get_attribute("#runs", "data-loaded")
    counted = page.get_attribute("#runs", "data-counted") or ""
    started = time.perf_counter()
    page.fill("#filter", text)
    page.press("#filter", "Enter")
    page.wait_for_function(
        "(b) => document.querySelector('#runs')?.dataset.loaded !== b", arg=before
    )
    took = time.perf_counter() - started
    # The count comes after the rows: let it land before the next figure is taken.
    page.wait_for_function(
        "(c) => (document.querySelector('#runs')?.dataset.counted || '') !== c", arg=counted
    )
    return took


def bench_runs_table(ctx: Context) -> Section:
    small_n, big_n = (100, 100_000) if ctx.sizes.reps > 3 else (100, 5_000)
    reps = 11 if ctx.sizes.reps > 3 else 3
    section = Section(f"The dashboard's runs table: {big_n:,} runs against {small_n:,}")
    _chromium()
    base = ctx.workdir / "ui-runs"
    remove(base)
    projects = {}
    for n in (small_n, big_n):
        proj = base / f"p{n}"
        _init_project(ctx, proj)
        log(f"ui-runs: writing {n:,} run records")
        section.details += make_runs(proj, n, seed=11, saved=min(n, 50))
        projects[n] = proj
    with (
        dashboard(ctx, projects[small_n]) as small_url,
        dashboard(ctx, projects[big_n]) as big_url,
        browser() as b,
    ):
        pages = {n: _signed_in(b, u) for n, u in ((small_n, small_url), (big_n, big_url))}
        bases = {n: u.split("/?")[0] for n, u in ((small_n, small_url), (big_n, big_url))}
        flip = {small_n: 0, big_n: 0}

        def typed(n: int) -> dict[str, float]:
            flip[n] += 1
            return {f"filter {n}": _filter_typed(pages[n], FILTER if flip[n] % 2 else FILTER2)}

        steps = {
            f"first {n}": (lambda n=n: {f"first {n}": _first_rows(pages[n], bases[n])})
            for n in (small_n, big_n)
        }
        s = interleaved(steps, reps)
        for n in (small_n, big_n):  # a fresh table for the filter figures
            _first_rows(pages[n], bases[n])
        f = interleaved({f"filter {n}": (lambda n=n: typed(n)) for n in (small_n, big_n)}, reps)
    section.rows = [
        Row(
            f"runs table: navigation to first page drawn, {big_n:,} runs vs {small_n:,}",
            "max",
            1.2,
            s.median(f"first {big_n}"),
            s.median(f"first {small_n}"),
            f"{small_n:,} runs {fmt_seconds(s.median(f'first {small_n}'))}",
        ),
        Row(
            f"runs table: a filter typed to rows redrawn, {big_n:,} runs vs {small_n:,}",
            "max",
            1.2,
            f.median(f"filter {big_n}"),
            f.median(f"filter {small_n}"),
            f"{small_n:,} runs {fmt_seconds(f.median(f'filter {small_n}'))}",
        ),
    ]
    section.details += [
        "headless Chromium (Debian's) through Playwright; a page of 50 rows; each figure "
        f"from navigation (or the filter's Enter) until the rows are in the page; filters "
        f"`{FILTER}` and `{FILTER2}` in turn; {reps} repetitions, interleaved",
        *(f"{k}: {s.spread(k)}" for k in s.values),
        *(f"{k}: {f.spread(k)}" for k in f.values),
    ]
    if not ctx.keep:
        remove(base)
    return section


def _series_run(store: Any, run_id: str, steps: int, seed: int) -> None:
    """A run's metrics.jsonl of `steps` loss values, taken into the series store."""
    from datmo.core.storage import series

    data = store.path("run-data", run_id)
    data.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    with open(data / "metrics.jsonl", "w") as f:
        t0 = 1.7e9
        lines = []
        for i in range(steps):
            loss = 2.0 / (1 + i / 1000) + rng.gauss(0, 0.05)
            lines.append(
                f'{{"kind": "metrics", "step": {i}, "time": {t0 + i * 0.01:.3f}, '
                f'"values": {{"loss": {loss:.6f}}}}}\n'
            )
            if len(lines) >= 100_000:
                f.write("".join(lines))
                lines = []
        f.write("".join(lines))
    series.sync(store, run_id)


CHART_JS = """async (runs) => {
  const box = document.createElement('div');
  box.style.width = '1000px';
  document.querySelector('main').append(box);
  const started = performance.now();
  const chart = new D.SeriesChart(box, {runs: runs, key: 'loss', height: 300});
  await chart.load(null, null);
  const took = performance.now() - started;
  const drawn = +box.dataset.series;
  chart.plot.destroy(); box.remove();
  if (drawn !== runs.length) throw new Error('drew ' + drawn + ' of ' + runs.length);
  return took / 1000;
}"""


def bench_series(ctx: Context) -> Section:
    full = ctx.sizes.reps > 3
    long_n, short_n, many, each = (
        (1_000_000, 1_000, 20, 100_000) if full else (100_000, 1_000, 5, 10_000)
    )
    reps = 15 if full else 3
    section = Section("The dashboard's charts: long series cost what short ones do")
    _chromium()
    base = ctx.workdir / "ui-series"
    remove(base)
    proj = base / "project"
    _init_project(ctx, proj)
    make_runs(proj, many + 2, seed=5, saved=many + 2)
    from datmo.core.controller.project import open_project
    from datmo.core.storage import runs as records

    opened = open_project(proj)
    ids = [r.id for r in records.query(opened.store, sort="created_at:asc").runs]
    started = time.perf_counter()
    _series_run(opened.store, ids[0], short_n, 1)
    _series_run(opened.store, ids[1], long_n, 2)
    for i, rid in enumerate(ids[2 : 2 + many]):
        _series_run(opened.store, rid, each, 10 + i)
    for rid in ids:  # the record names the metric, as a run's live flush would
        records.update(opened.store, rid, metrics={"loss": 0.1})
    section.details.append(
        f"series written and taken in: {short_n:,} + {long_n:,} + {many} x {each:,} steps "
        f"in {fmt_seconds(time.perf_counter() - started)}"
    )
    with dashboard(ctx, proj) as url, browser() as b:
        page = _signed_in(b, url)
        groups = {
            f"{short_n} steps": [ids[0]],
            f"{long_n} steps": [ids[1]],
            f"1 x {each}": [ids[2]],
            f"{many} x {each}": ids[2 : 2 + many],
        }
        s = interleaved(
            {k: (lambda k=k, v=v: {k: page.evaluate(CHART_JS, v)}) for k, v in groups.items()},
            reps,
        )
    section.rows = [
        Row(
            f"a run's chart fetched and drawn: {long_n:,} steps vs {short_n:,}",
            "max",
            1.5,
            s.median(f"{long_n} steps"),
            s.median(f"{short_n} steps"),
            f"{short_n:,} steps {fmt_seconds(s.median(f'{short_n} steps'))}",
        ),
        Row(
            f"{many} runs x {each:,} steps overlaid vs one run of {each:,}",
            "max",
            2.0,
            s.median(f"{many} x {each}"),
            s.median(f"1 x {each}"),
            f"one run {fmt_seconds(s.median(f'1 x {each}'))}",
        ),
    ]
    section.details += [
        "each figure: a 1000-pixel uPlot chart made in the page (D.SeriesChart), from the "
        f"request of the whole range to the chart drawn; {reps} repetitions, interleaved",
        *(f"{k}: {s.spread(k)}" for k in s.values),
    ]
    if not ctx.keep:
        remove(base)
    return section


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_mlflow_ui(ctx: Context) -> Section:
    n = 10_000 if ctx.sizes.reps > 3 else 500
    reps = 7 if ctx.sizes.reps > 3 else 3
    section = Section(f"The runs table's first rows over {n:,} runs: datmo ui against MLflow's UI")
    _chromium()
    label = f"runs table, navigation to first rows drawn, {n:,} runs: datmo ui vs mlflow server"
    py, why = ensure_mlflow(ctx.workdir)
    if py is None:
        section.rows = [Row(label, "speedup", 5.0, skipped=why)]
        return section
    base = ctx.workdir / "ui-mlflow"
    remove(base)
    proj = base / "project"
    _init_project(ctx, proj)
    section.details += make_runs(proj, n, seed=7, saved=0)
    db = base / "mlflow.db"
    gen = _in_mlflow_venv(py, ctx, base, "mlflow-make", str(db), str(n), "7")
    section.details.append(f"MLflow {gen['version']}: {n:,} runs in {fmt_seconds(gen['seconds'])}")
    port = _free_port()
    mlflow = subprocess.Popen(
        [
            str(py.parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{db}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=base,
        env={**ctx.tools.env, **QUIET_MLFLOW},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        experiment = _wait_mlflow(port)
        # MLflow 3 opens on its GenAI overview: the runs table is the "Model training" view.
        ml_url = (
            f"http://127.0.0.1:{port}/#/experiments/{experiment}/runs?workflowType=machine_learning"
        )
        with dashboard(ctx, proj) as url, browser() as b:
            page = _signed_in(b, url)
            dbase = url.split("/?")[0]
            ml = b.new_context(viewport={"width": 1280, "height": 900}).new_page()

            def mlflow_rows() -> dict[str, float]:
                ml.goto("about:blank")
                started = time.perf_counter()
                ml.goto(ml_url)
                ml.wait_for_selector("text=/bench-run-\\d+/", timeout=120_000)
                return {"mlflow": time.perf_counter() - started}

            s = interleaved(
                {"datmo": lambda: {"datmo": _first_rows(page, dbase)}, "mlflow": mlflow_rows},
                reps,
            )
            ml.screenshot(path=str(base / "mlflow.png"))
    finally:
        os.killpg(mlflow.pid, signal.SIGTERM)
        mlflow.wait(timeout=30)
    section.rows = [
        Row(
            label,
            "speedup",
            5.0,
            s.median("datmo"),
            s.median("mlflow"),
            f"MLflow UI {fmt_seconds(s.median('mlflow'))}",
        )
    ]
    section.details += [
        f"MLflow: `mlflow server` on sqlite:///mlflow.db (its own venv), the experiment's "
        "page until a run's name shows; datmo: `datmo ui` until the first row shows; the "
        f"same Chromium, {reps} repetitions, interleaved",
        *(f"{k}: {s.spread(k)}" for k in s.values),
    ]
    if not ctx.keep:
        remove(base)
    return section


def _wait_mlflow(port: int) -> str:
    """The id of the experiment 'bench', once the server answers."""
    import urllib.request

    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name"
                "?experiment_name=bench",
                timeout=5,
            ) as r:
                return str(json.load(r)["experiment"]["experiment_id"])
        except OSError:
            time.sleep(1)
    raise RuntimeError("mlflow server did not answer")
