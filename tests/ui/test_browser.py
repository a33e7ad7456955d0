"""The dashboard as a person sees it, in a real headless Chromium (Debian's), driving a
real `datmo ui` over a project with real runs."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from .conftest import COLOR_PIXELS, PALETTE, XSS, Project, Served, datmo_cmd, serve, stop

pytestmark = pytest.mark.browser


def rows(page: Any) -> list[str]:
    return page.eval_on_selector_all("#runs tbody tr", "trs => trs.map(t => t.dataset.id)")


def test_a_filter_typed_into_the_page_shows_the_runs_ls_shows(
    page: Any, ui_project: Project
) -> None:
    assert sorted(rows(page)) == sorted(ui_project.runs.values())
    page.fill("#filter", "lr>0.2 and acc>0")
    page.wait_for_function("() => document.querySelector('#count')?.textContent.includes('of 2')")
    shown = rows(page)
    listed = json.loads(
        ui_project.datmo("ls", "--filter", "lr>0.2 and acc>0", "--format", "json").stdout
    )
    assert shown == [r["id"] for r in listed]  # the same runs, in the same order
    assert sorted(shown) == sorted([ui_project.runs["0.3"], ui_project.runs["0.5"]])
    # A bad filter: the same one-line error as `datmo ls`, and no rows.
    page.fill("#filter", "lr>>0.2")
    page.wait_for_selector("#filter-error:not([hidden])")
    said = page.text_content("#filter-error")
    cli = subprocess.run(
        [*datmo_cmd(), "ls", "--filter", "lr>>0.2"],
        cwd=ui_project.root,
        env=ui_project.env,
        capture_output=True,
        text=True,
    )
    assert cli.returncode != 0 and said and said in cli.stderr
    assert rows(page) == []
    # The sort language too.
    page.fill("#filter", "")
    page.fill("#sort", "lr:asc")
    page.wait_for_function("() => document.querySelector('#count')?.textContent.includes('of 3')")
    page.wait_for_function(
        f"() => document.querySelector('#runs tbody tr').dataset.id === '{ui_project.runs['0.1']}'"
    )
    assert page.errors == []


def test_a_runs_chart_is_drawn_with_one_series(page: Any, ui_project: Project) -> None:
    run = ui_project.runs["0.1"]
    page.goto(page.url.split("#")[0] + f"#/run/{run}")
    box = page.wait_for_selector('.chartbox[data-key="loss"][data-series]')
    assert box.get_attribute("data-series") == "1"
    assert int(box.get_attribute("data-points")) == 300
    drawn = page.evaluate(COLOR_PIXELS, [box, PALETTE])
    assert drawn[0] > 100, drawn  # the run's line, in the first color
    assert drawn[1:] == [0] * (len(PALETTE) - 1)  # and no other series
    # The log and the files of its after snapshot.
    page.wait_for_function("() => document.querySelector('#log')?.textContent !== undefined")
    page.wait_for_selector("table.files")
    assert "model.txt" in page.text_content("table.files")
    assert page.errors == []


def test_compare_overlays_every_run_and_marks_the_differing_config(
    page: Any, ui_project: Project
) -> None:
    for cb in page.query_selector_all("#runs tbody input[type=checkbox]"):
        cb.check()
    page.click("#compare-selected")
    box = page.wait_for_selector("#overlay[data-series]")
    assert box.get_attribute("data-series") == "3"
    drawn = page.evaluate(COLOR_PIXELS, [box, PALETTE])
    assert all(n > 50 for n in drawn[:3]), drawn  # three lines in three colors
    # Smoothing and the log scale redraw the same answer; a drag zooms in, asking the
    # server for the finer range (fewer points), a double click zooms out again.
    before = box.get_attribute("data-drawn")
    page.eval_on_selector(
        "#smooth", "(e) => { e.value = '0.9'; e.dispatchEvent(new Event('input')); }"
    )
    page.check("#log")
    page.wait_for_function(
        "(b) => document.querySelector('#overlay').dataset.drawn !== b", arg=before
    )
    drawn = page.evaluate(COLOR_PIXELS, [box, PALETTE])
    assert all(n > 50 for n in drawn[:3]), drawn
    whole = int(box.get_attribute("data-points"))
    over = page.query_selector("#overlay .u-over").bounding_box()
    y = over["y"] + over["height"] / 2
    page.mouse.move(over["x"] + over["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(over["x"] + over["width"] * 0.6, y, steps=5)
    page.mouse.up()
    page.wait_for_function(
        "(n) => +document.querySelector('#overlay').dataset.points < n", arg=whole
    )
    assert box.get_attribute("data-series") == "3"
    page.dblclick("#overlay .u-over")
    page.wait_for_function(
        "(n) => +document.querySelector('#overlay').dataset.points === n", arg=whole
    )
    lr = page.wait_for_selector('#compare-table tr[data-key="config.lr"]')
    assert "differ" in lr.get_attribute("class")
    assert lr.query_selector("td.mark").text_content() == "≠"
    seed = page.query_selector('#compare-table tr[data-key="config.seed"]')
    assert "same" in seed.get_attribute("class")
    assert seed.query_selector("td.mark").text_content() == ""
    # Parallel coordinates and scatter are drawn by ECharts, one line / point per run.
    page.wait_for_selector("#parallel[data-lines='3'] canvas")
    page.wait_for_selector("#scatter[data-points='3'] canvas")
    assert page.errors == []


def test_an_xss_message_shows_as_text(page: Any, ui_project: Project) -> None:
    run = ui_project.runs["0.3"]
    cell = page.wait_for_selector(f'#runs tr[data-id="{run}"] td.msg')
    assert cell.text_content() == XSS
    assert cell.query_selector("img") is None
    page.goto(page.url.split("#")[0] + f"#/run/{run}")
    page.wait_for_selector("#message")
    assert page.text_content("#message") == XSS
    page.wait_for_timeout(300)
    assert page.query_selector("main img") is None
    assert page.dialogs == [] and page.errors == []


def test_a_request_without_the_token_is_refused(browser: Any, served: Served) -> None:
    context = browser.new_context()
    tab = context.new_page()
    response = tab.goto(served.base + "/")
    assert response.status == 403
    assert "token" in tab.text_content("body")
    response = tab.goto(served.base + "/api/runs")
    assert response.status == 403
    # Signed in (cookie), an API call without the header is still refused.
    tab.goto(served.url)
    tab.wait_for_selector("#runs tbody tr")
    status = tab.evaluate("fetch('/api/runs').then(r => r.status)")
    assert status == 403
    context.close()


def test_tags_and_the_message_can_be_changed_from_the_page(page: Any, ui_project: Project) -> None:
    run = ui_project.runs["0.5"]
    page.goto(page.url.split("#")[0] + f"#/run/{run}")
    page.fill("#new-tag", "best")
    page.click("text=add tag")
    page.wait_for_selector(".edit .tag")
    page.click("text=edit")
    page.fill("#message-input", "the winner")
    page.click("text=save")
    page.wait_for_function("() => document.querySelector('#message')?.textContent === 'the winner'")
    (doc,) = json.loads(ui_project.datmo("ls", "--filter", "tag=best", "--format", "json").stdout)
    assert doc["id"] == run and doc["message"] == "the winner"


LIVE = """\
import datmo, os, time
for i in range(600):
    if os.path.exists("stop"):
        break
    value = float(open("value").read()) if os.path.exists("value") else 1.0
    datmo.log_metrics(step=i, live=value)
    time.sleep(0.2)
"""


def test_a_running_runs_metric_updates_on_the_page(page: Any, ui_project: Project) -> None:
    root = ui_project.root
    (root / "live.py").write_text(LIVE)
    for name in ("stop", "value"):
        (root / name).unlink(missing_ok=True)
    proc = subprocess.Popen(
        [*datmo_cmd(), "run", "--executor", "local", "python3 live.py"],
        cwd=root,
        env=ui_project.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # The new RUNNING run appears in the table without a reload.
        page.wait_for_selector('#runs tr[data-status="RUNNING"]', timeout=20_000)
        run = page.get_attribute('#runs tr[data-status="RUNNING"]', "data-id")
        page.goto(page.url.split("#")[0] + f"#/run/{run}")
        page.wait_for_function(
            "() => document.querySelector('table.metrics') && "
            "document.querySelector('table.metrics')?.textContent.includes('live')",
            timeout=15_000,
        )
        (root / "value").write_text("4321.5")
        logged = time.monotonic()
        page.wait_for_function(
            "() => document.querySelector('table.metrics')?.textContent.includes('4321.5')",
            timeout=10_000,
        )
        took = time.monotonic() - logged
        assert took < 6, f"the page showed the new value {took:.1f} s after it was logged"
        # Its chart follows too.
        page.wait_for_function(
            "() => +document.querySelector('.chartbox[data-key=\"live\"]')?.dataset.points > 3",
            timeout=10_000,
        )
    finally:
        (root / "stop").write_text("")
        proc.wait(timeout=60)
    page.wait_for_function(
        "() => document.querySelector('h1 .status')?.textContent === 'SUCCESS'", timeout=20_000
    )
    assert page.errors == []


def test_plot_html_draws_offline(browser: Any, ui_project: Project) -> None:
    out = ui_project.root / "runs.html"
    ui_project.datmo("plot", *ui_project.runs.values(), "--metric", "loss", "-o", str(out))
    text = out.read_text()
    assert "http://" not in text.replace("http://www.w3.org", "")  # nothing from elsewhere
    assert "https://" not in text.split("<body>")[1].split("<script>")[0]
    context = browser.new_context(offline=True)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.goto(out.as_uri())
    box = tab.wait_for_selector("figure div[data-series]")
    assert box.get_attribute("data-series") == "3"
    drawn = tab.evaluate(COLOR_PIXELS, [box, ["#1f77b4", "#d62728", "#2ca02c"]])
    assert all(n > 50 for n in drawn), drawn
    assert errors == []  # the inline scripts pass the file's own CSP (by their hashes)
    context.close()


def test_a_second_server_on_a_taken_port_says_so(ui_project: Project) -> None:
    first = serve(ui_project.root, ui_project.env)
    try:
        again = subprocess.run(
            [*datmo_cmd(), "ui", "--no-browser", "--port", str(first.port)],
            cwd=ui_project.root,
            env=ui_project.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert again.returncode == 2
        assert again.stderr.count("\n") == 1 and "pick another with --port" in again.stderr
    finally:
        code, out, _ = stop(first)
    assert code == 0 and "stopped" in out


def test_a_snapshots_files_and_message_from_the_snapshots_page(
    page: Any, ui_project: Project
) -> None:
    ui_project.datmo("snapshot", "create", "-m", "by hand")
    page.goto(page.url.split("#")[0] + "#/snapshots")
    row = page.wait_for_selector("#snapshots tbody tr")
    snap = row.get_attribute("data-id")
    row.query_selector("button.link").click()
    page.wait_for_selector("#snapshot-files table.files")
    assert "train.py" in page.text_content("#snapshot-files table.files")
    page.click("#snapshot-files >> text=edit")
    page.fill("#message-input", "renamed <b>here</b>")
    page.click("#snapshot-files >> text=save")
    page.wait_for_function(
        "() => document.querySelector('#message')?.textContent === 'renamed <b>here</b>'"
    )
    shown = json.loads(ui_project.datmo("snapshot", "inspect", snap, "--format", "json").stdout)
    shown = shown[0] if isinstance(shown, list) else shown
    assert shown["message"] == "renamed <b>here</b>"
    assert page.errors == []
