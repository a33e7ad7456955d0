"""The dashboard's gate and API, request by request (Werkzeug's test client over the
real app): the token, the cookie, the Host check, no CORS, the CSP, safe downloads,
nothing deletable, and the CLI's own errors."""

from __future__ import annotations

import json
import math
import os
import re
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from datmo.core.controller.project import open_project
from datmo.ui import api as api_module
from datmo.ui import serve
from datmo.ui.app import Dashboard

from .conftest import XSS, Project, datmo_cmd, stop
from .conftest import serve as start_ui

TOKEN = "ab" * 24
PORT = 8123
BASE = f"http://127.0.0.1:{PORT}/"


@pytest.fixture(scope="module")
def app(ui_project: Project) -> Dashboard:
    return Dashboard(open_project(ui_project.root), TOKEN, PORT)


def client(app: Dashboard, signed_in: bool = True) -> Client:
    c = Client(app)
    if signed_in:
        c.set_cookie(f"datmo-ui-{PORT}", TOKEN, domain="127.0.0.1")
    return c


def api(app: Dashboard, path: str, **kw: Any) -> Any:
    headers = {"X-Datmo-Token": TOKEN, **kw.pop("headers", {})}
    return client(app).get(path, headers=headers, base_url=BASE, **kw)


def test_every_path_needs_the_token(app: Dashboard, ui_project: Project) -> None:
    anon = client(app, signed_in=False)
    run = ui_project.runs["0.1"]
    for path in ("/", "/static/app.js", "/api/runs", f"/api/runs/{run}", "/files/x/train.py"):
        got = anon.get(path, base_url=BASE)
        assert got.status_code == 403, path
    wrong = anon.get("/api/runs", headers={"X-Datmo-Token": "cd" * 24}, base_url=BASE)
    assert wrong.status_code == 403


def test_the_token_becomes_a_strict_httponly_cookie_named_for_the_port(app: Dashboard) -> None:
    anon = client(app, signed_in=False)
    got = anon.get(f"/?token={TOKEN}", base_url=BASE)
    assert got.status_code == 303
    assert got.headers["Location"] == "/"  # the token leaves the address bar
    cookie = got.headers["Set-Cookie"]
    assert cookie.startswith(f"datmo-ui-{PORT}={TOKEN};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    page = anon.get("/", base_url=BASE)
    assert page.status_code == 200 and TOKEN in page.get_data(as_text=True)


def test_api_calls_need_the_header_not_only_the_cookie(app: Dashboard) -> None:
    got = client(app).get("/api/runs", base_url=BASE)
    assert got.status_code == 403
    assert api(app, "/api/runs").status_code == 200


@pytest.mark.parametrize(
    "host",
    ["evil.example:8123", "127.0.0.1.nip.io:8123", f"127.0.0.1:{PORT + 1}", "127.0.0.1", "x"],
)
def test_other_host_names_are_refused(app: Dashboard, host: str) -> None:
    got = api(app, "/api/runs", headers={"Host": host})
    assert got.status_code == 403
    assert b"127.0.0.1" in got.data


def test_localhost_and_a_name_asked_for_are_answered(ui_project: Project) -> None:
    named = Dashboard(open_project(ui_project.root), TOKEN, PORT, host="devbox.lan")
    for host in (f"localhost:{PORT}", f"devbox.lan:{PORT}", f"[::1]:{PORT}"):
        got = client(named).get("/api/runs", headers={"X-Datmo-Token": TOKEN, "Host": host})
        assert got.status_code == 200, host


def test_no_cors_and_a_strict_csp(app: Dashboard) -> None:
    got = api(app, "/api/runs", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in got.headers
    page = client(app).get("/", base_url=BASE)
    csp = page.headers["Content-Security-Policy"]
    script = re.search(r"script-src ([^;]*)", csp)[1]  # type: ignore[index]
    assert script.strip() == "'self'"  # no inline script, no eval
    assert "frame-ancestors 'none'" in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    # The page holds no inline script at all: data reaches it through the API only.
    html = page.get_data(as_text=True)
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    preflight = client(app).options("/api/runs", base_url=BASE)
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_nothing_can_be_deleted(app: Dashboard, ui_project: Project) -> None:
    run = ui_project.runs["0.1"]
    for path in (f"/api/runs/{run}", f"/api/runs/{run}/tags", f"/api/snapshots/{run}"):
        got = client(app).delete(path, headers={"X-Datmo-Token": TOKEN}, base_url=BASE)
        assert got.status_code in (403, 404, 405), path
    assert len(json.loads(ui_project.datmo("ls", "--format", "json").stdout)) >= 3


def _post(app: Dashboard, path: str, body: Any, **headers: str) -> Any:
    return client(app).post(
        path,
        data=json.dumps(body),
        content_type=headers.pop("content_type", "application/json"),
        headers={"X-Datmo-Token": TOKEN, **headers},
        base_url=BASE,
    )


def test_edits_are_tags_and_messages_through_the_controllers(
    app: Dashboard, ui_project: Project
) -> None:
    run = ui_project.runs["0.1"]
    got = _post(app, f"/api/runs/{run}/tags", {"add": ["keep"]})
    assert got.status_code == 200 and got.json["tags"] == ["keep"]
    bad = _post(app, f"/api/runs/{run}/tags", {"add": ["no spaces"]})
    assert bad.status_code == 400 and "is not a tag" in bad.json["error"]
    assert _post(app, f"/api/runs/{run}/message", {"message": " "}).status_code == 400
    assert (
        _post(app, f"/api/runs/{run}/message", {"message": "renamed"}).json["message"] == "renamed"
    )
    # A form post from another page (no JSON, or another origin) is refused.
    form = _post(app, f"/api/runs/{run}/tags", {"add": ["x"]}, content_type="text/plain")
    assert form.status_code == 400
    foreign = _post(app, f"/api/runs/{run}/tags", {"add": ["x"]}, Origin="https://evil.example")
    assert foreign.status_code == 400
    assert _post(app, f"/api/environments/{run}/tags", {"add": ["x"]}).status_code == 404
    _post(app, f"/api/runs/{run}/tags", {"remove": ["keep"]})
    _post(app, f"/api/runs/{run}/message", {"message": "lr 0.1"})
    (doc,) = [
        r for r in json.loads(ui_project.datmo("ls", "--format", "json").stdout) if r["id"] == run
    ]
    assert doc["tags"] == [] and doc["message"] == "lr 0.1"


def test_a_bad_filter_gets_the_clis_own_error(app: Dashboard, ui_project: Project) -> None:
    got = api(app, "/api/runs", query_string={"filter": "acc>0.9 && lr=1"})
    assert got.status_code == 400
    cli = subprocess.run(
        [*datmo_cmd(), "ls", "--filter", "acc>0.9 && lr=1"],
        cwd=ui_project.root,
        env=ui_project.env,
        capture_output=True,
        text=True,
    )
    assert cli.stderr.strip() == f"datmo: error: {got.json['error']}"


def test_runs_are_paged_by_the_server(app: Dashboard, ui_project: Project) -> None:
    first = api(app, "/api/runs", query_string={"limit": 2, "sort": "lr:asc", "count": "1"}).json
    second = api(app, "/api/runs", query_string={"limit": 2, "offset": 2, "sort": "lr:asc"}).json
    assert len(first["runs"]) == 2 and first["total"] >= 3
    ids = [r["id"] for r in first["runs"] + second["runs"]]
    assert ids[:3] == [ui_project.runs[lr] for lr in ("0.1", "0.3", "0.5")]
    assert len(set(ids)) == len(ids)
    keys = api(app, "/api/keys").json
    assert (
        "lr" in keys["config"] and "loss" in keys["metrics"] and "loss.min" not in keys["metrics"]
    )


def _unframed(body: bytes) -> dict[str, Any]:
    """An /api/series answer read as the page reads it: head, then x and y of each."""
    (size,) = struct.unpack_from("<I", body)
    assert (4 + size) % 8 == 0  # the doubles are aligned for a Float64Array
    doc: dict[str, Any] = json.loads(body[4 : 4 + size])
    at = 4 + size
    for s in doc["series"]:
        n = s["n"]
        s["y"] = list(struct.unpack_from(f"<{n}d", body, at))
        if "xi" in s:  # x = first + delta * index, the indices as 4-byte integers
            first, delta = s["xi"]
            s["x"] = [first + delta * i for i in struct.unpack_from(f"<{n}I", body, at + 8 * n)]
            at += 12 * n + (4 if n % 2 else 0)
        else:
            s["x"] = list(struct.unpack_from(f"<{n}d", body, at + 8 * n))
            at += 16 * n
    assert at == len(body)
    return doc


def test_the_series_answer_reads_back_as_the_page_reads_it() -> None:
    from array import array

    from datmo.core.storage.seriesview import View, indices

    odd = View(array("d", [5.0, 15.0, 25.0]), array("d", [1.5, math.nan, -2.0]), total=9)
    odd.rule, odd.index = (5.0, 10.0), indices(0, 3)  # 3 indices of 4 bytes: padded
    plain = View(array("d", [0.25, 7.0]), array("d", [3.0, 4.0]), total=2, shown=2)
    body = api_module.framed(
        {"series": [odd.wire()[0], plain.wire()[0]]}, [odd.wire()[1], plain.wire()[1]]
    )
    got = _unframed(body)["series"]
    assert got[0]["xi"] == [5.0, 10.0] and got[0]["x"] == [5.0, 15.0, 25.0]
    assert got[0]["y"][0] == 1.5 and math.isnan(got[0]["y"][1]) and got[0]["y"][2] == -2.0
    assert got[1]["x"] == [0.25, 7.0] and got[1]["y"] == [3.0, 4.0] and "xi" not in got[1]
    assert got[1]["total"] == 2 and got[1]["n"] == 2


def test_series_come_at_a_charts_detail(app: Dashboard, ui_project: Project) -> None:
    runs = [ui_project.runs["0.1"], ui_project.runs["0.5"]]
    answer = api(app, "/api/series", query_string={"run": runs, "key": "loss", "width": 50})
    assert answer.mimetype == "application/octet-stream"
    got = _unframed(answer.data)
    assert [s["run"] for s in got["series"]] == runs
    for s in got["series"]:
        xs, ys = s["x"], s["y"]
        assert s["total"] == 300 and len(xs) == len(ys) <= 50  # one point per pixel at most
        assert xs == sorted(xs) and min(ys) < 0.9 and max(ys) >= 1.0  # the envelope keeps peaks
    near = api(app, "/api/series", query_string={"run": runs[0], "key": "loss", "lo": 10, "hi": 20})
    assert _unframed(near.data)["series"][0]["x"][1:-1] == list(range(10, 21))
    by_time = _unframed(
        api(app, "/api/series", query_string={"run": runs, "key": "loss", "axis": "time"}).data
    )
    for s in by_time["series"]:  # times are no rule of the index: doubles
        assert "xi" not in s and s["x"] == sorted(s["x"]) and s["x"][0] > 1e9
    bad = api(app, "/api/series", query_string={"run": runs[0], "key": "loss", "axis": "epoch"})
    assert bad.status_code == 400
    assert api(app, "/api/compare", query_string={"run": runs[:1]}).status_code == 400


def test_downloads_are_files_the_snapshot_holds_as_sandboxed_attachments(
    app: Dashboard, ui_project: Project
) -> None:
    run = api(app, f"/api/runs/{ui_project.runs['0.1']}").json
    snap = run["after_snapshot_id"]
    listed = {f["path"] for f in api(app, f"/api/snapshots/{snap}/files").json["files"]}
    assert {"train.py", "model.txt", "page.html", "curve.svg"} <= listed
    got = client(app).get(f"/files/{snap}/page.html", base_url=BASE)
    assert got.status_code == 200
    assert got.headers["Content-Disposition"].startswith("attachment;")
    assert got.headers["Content-Type"] == "application/octet-stream"
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert got.headers["Content-Security-Policy"].startswith("sandbox")
    # A preview is for images only; an SVG's script cannot run (sandbox, no script-src).
    svg = client(app).get(f"/files/{snap}/curve.svg?preview=1", base_url=BASE)
    assert svg.headers["Content-Type"].startswith("image/svg+xml")
    assert "sandbox" in svg.headers["Content-Security-Policy"]
    assert "script-src" not in svg.headers["Content-Security-Policy"]
    html = client(app).get(f"/files/{snap}/page.html?preview=1", base_url=BASE)
    assert html.headers["Content-Type"] == "application/octet-stream"
    assert html.headers["Content-Disposition"].startswith("attachment;")
    assert client(app).get(f"/files/{snap}/model.txt", base_url=BASE).data == b"weights 0.1"
    for path in ("../../index.sqlite", "nothere.txt", "%2e%2e/project.json"):
        assert client(app).get(f"/files/{snap}/{path}", base_url=BASE).status_code == 404
    for path in ("../app.py", ".hidden", "vendor/../../api.py"):
        assert client(app).get(f"/static/{path}", base_url=BASE).status_code == 404


def test_an_xss_string_is_data_in_the_api(app: Dashboard, ui_project: Project) -> None:
    got = api(app, f"/api/runs/{ui_project.runs['0.3']}")
    assert got.headers["Content-Type"] == "application/json"
    assert got.json["message"] == XSS


def test_the_process_keeps_the_token_off_its_command_line(ui_project: Project) -> None:
    s = start_ui(ui_project.root, ui_project.env)
    try:
        argv = Path(f"/proc/{s.proc.pid}/cmdline").read_bytes()
        assert s.token.encode() not in argv
    finally:
        code, out, _ = stop(s)
    assert code == 0 and out.strip().endswith("datmo ui: stopped")


def test_another_address_is_served_only_when_asked_with_a_warning(ui_project: Project) -> None:
    s = start_ui(ui_project.root, ui_project.env, "--host", "127.0.0.2")
    try:
        assert s.base.startswith("http://127.0.0.2:")
    finally:
        _, _, err = stop(s)
    assert "warning: serving on 127.0.0.2" in err


def test_the_browser_gets_a_private_file_not_the_url(tmp_path: Path) -> None:
    seen: list[str] = []
    url = "http://127.0.0.1:1/?token=" + TOKEN
    path = serve.open_browser(url, opener=seen.append)
    try:
        for _ in range(100):
            if seen:
                break
            import time

            time.sleep(0.01)
        assert seen == [path.as_uri()] and TOKEN not in seen[0]
        assert os.stat(path).st_mode & 0o077 == 0  # only this user can read it
        assert url.replace("&", "&amp;") in path.read_text()
    finally:
        path.unlink()
