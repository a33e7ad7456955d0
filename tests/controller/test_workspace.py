"""Workspaces: `datmo notebook` and `datmo rstudio` as runs of their own type.

Jupyter is Debian's Notebook 6.4 (the `jupyter_image` fixture). RStudio Server is
not in Debian, so its container contract is checked against a small stand-in
image: an `/init` that reports what it was started with, then serves HTTP on 8787.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import UNUSED_GID, UNUSED_UID

REPO = Path(__file__).resolve().parents[2]
MARK = "datmo.test=test_workspace"
NOTEBOOK_URL = re.compile(r"http://127\.0\.0\.1:(\d+)/tree\?token=([A-Za-z0-9_-]+)")
RSTUDIO_URL = re.compile(r"http://127\.0\.0\.1:(\d+)/")
LOGIN = re.compile(r"login: user rstudio, password (\S+)")
# Straight to 127.0.0.1: no proxy from the environment may see a token.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
CLI = Callable[..., Any]

# The stand-in for rocker's /init: it reports its settings, then answers HTTP only
# after a pause, so the test can tell that `datmo rstudio` waited for it.
RSTUDIO_INIT = """#!/bin/sh
echo "USERID=$USERID GROUPID=$GROUPID UID_NOW=$(id -u)"
echo "PASSWORD=$PASSWORD"
printf %s "$PASSWORD" | sha256sum | sed 's/^/PWSHA=/'
printf 'USERID=%s\\nGROUPID=%s\\nUID_NOW=%s\\n' "$USERID" "$GROUPID" "$(id -u)" \\
  > /workspace/rstudio-env.txt
sleep 3
exec python3 -m http.server 8787
"""
RSTUDIO_SERVE_DELAY_S = 3.0


# -- helpers ---------------------------------------------------------------------------


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def project_id(root: Path) -> str:
    return str(json.loads((root / ".datmo" / "project.json").read_text())["id"])


def dockerfile(base: str) -> str:
    # A label of its own gives each project its own image (tagged by definition hash), so
    # no other test's cleanup can remove it, and its project label lets it be removed.
    return f"FROM {base}\nLABEL {MARK} datmo.test.nonce={uuid.uuid4().hex}\n"


def remove_leftovers(root: Path) -> None:
    pid = project_id(root)
    left = docker("ps", "-aq", "--filter", f"label=datmo.project={pid}").split()
    if left:
        subprocess.run(["docker", "rm", "-f", *left], capture_output=True)
    images = docker("images", "-q", "--filter", f"label=datmo.project={pid}").split()
    if images:
        subprocess.run(["docker", "rmi", "-f", *set(images)], capture_output=True)


def runs(cli: CLI) -> list[dict[str, Any]]:
    result = cli("ls", "--format", "json")
    assert result.exit_code == 0, result.output
    docs: list[dict[str, Any]] = json.loads(result.stdout)
    return docs


def only_run(cli: CLI) -> dict[str, Any]:
    docs = runs(cli)
    assert len(docs) == 1, docs
    return docs[0]


def containers_of(run_id: str) -> list[str]:
    return docker("ps", "-aq", "--filter", f"label=datmo.run={run_id}").split()


def container_removed(run_id: str, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while containers_of(run_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    return containers_of(run_id) == []


def inspect_container(run_id: str) -> dict[str, Any]:
    (cid,) = containers_of(run_id)
    doc: dict[str, Any] = json.loads(docker("inspect", cid))[0]
    return doc


def bound_only_to_loopback(container: dict[str, Any], container_port: str, host_port: int) -> None:
    bindings = container["HostConfig"]["PortBindings"]
    assert list(bindings) == [container_port], bindings
    assert bindings[container_port] == [{"HostIp": "127.0.0.1", "HostPort": str(host_port)}]


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"token {token}"} if token else {}
    with HTTP.open(urllib.request.Request(url, headers=headers), timeout=10) as r:
        return int(r.status), r.read()


def put_json(url: str, token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with HTTP.open(req, timeout=10) as r:
        return int(r.status), json.loads(r.read())


EMPTY_NOTEBOOK = {
    "type": "notebook",
    "content": {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5},
}


def files_holding(root: Path, secret: str) -> list[str]:
    """Every file under root whose bytes contain secret."""
    needle = secret.encode()
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            with contextlib.suppress(OSError):
                if not path.is_symlink() and needle in path.read_bytes():
                    found.append(str(path.relative_to(root)))
    return found


def one_line_error(result: Any) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.output
    assert result.stdout.strip() == "", result.output
    return str(lines[0])


def free_port(low: int = 9000, high: int = 9999) -> int:
    for port in range(low + os.getpid() % 500, high):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail(f"no free port in {low}-{high}")


@contextlib.contextmanager
def datmo_process(args: list[str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "datmo", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def read_until(proc: subprocess.Popen[str], pattern: re.Pattern[str], timeout: float) -> str:
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while not pattern.search(seen):
        left = deadline - time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], max(left, 0))
        if not ready:
            pytest.fail(f"no {pattern.pattern} within {timeout}s; stdout was {seen!r}")
        line = proc.stdout.readline()
        if not line:
            err = proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"datmo exited ({proc.wait()}) before the URL; {seen!r} {err!r}")
        seen += line
    return seen


def wait_finished(cli: CLI, run_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = next(r for r in runs(cli) if r["id"] == run_id)
        if doc["status"] != "RUNNING":
            return doc
        time.sleep(0.2)
    pytest.fail(f"run {run_id[:8]} still RUNNING after {timeout}s")


# -- projects --------------------------------------------------------------------------


@pytest.fixture
def notebook_project(docker_project: Path, jupyter_image: str) -> Iterator[Path]:
    """A root-owned project whose root Dockerfile is the Jupyter image."""
    (docker_project / "Dockerfile").write_text(dockerfile(jupyter_image))
    yield docker_project
    remove_leftovers(docker_project)


@pytest.fixture
def their_notebook_project(foreign_project: Path, jupyter_image: str, cli: CLI) -> Iterator[Path]:
    """The same in a folder owned by uid 4242, as a user's project is (tests run as root)."""
    assert cli("init", "--name", "theirs").exit_code == 0
    (foreign_project / "Dockerfile").write_text(dockerfile(jupyter_image))
    yield foreign_project
    remove_leftovers(foreign_project)


@pytest.fixture(scope="module")
def rstudio_image(python_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A stand-in for rocker/rstudio: the rserver binary datmo looks for, and an /init."""
    context = tmp_path_factory.mktemp("rstudio-image")
    (context / "init").write_text(RSTUDIO_INIT)
    (context / "Dockerfile").write_text(
        f"FROM {python_image}\n"
        "COPY init /init\n"
        "RUN chmod 755 /init && mkdir -p /usr/lib/rstudio-server/bin "
        "&& touch /usr/lib/rstudio-server/bin/rserver\n"
        f"LABEL {MARK}\n"
    )
    tag = f"datmo-test/rstudio-stand-in:{uuid.uuid4().hex[:12]}"
    build = subprocess.run(
        ["docker", "build", "-q", "-t", tag, str(context)], capture_output=True, text=True
    )
    assert build.returncode == 0, build.stderr
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


@pytest.fixture
def their_rstudio_project(foreign_project: Path, rstudio_image: str, cli: CLI) -> Iterator[Path]:
    assert cli("init", "--name", "theirs").exit_code == 0
    (foreign_project / "Dockerfile").write_text(dockerfile(rstudio_image))
    yield foreign_project
    remove_leftovers(foreign_project)


def start_notebook(cli: CLI, *args: str) -> tuple[dict[str, Any], int, str]:
    """`datmo notebook --no-browser -d ARGS`: (run record, host port, token)."""
    result = cli("notebook", "--no-browser", "-d", *args)
    assert result.exit_code == 0, result.output
    m = NOTEBOOK_URL.search(result.stdout)
    assert m, result.output
    doc = next(r for r in runs(cli) if r["status"] == "RUNNING")
    return doc, int(m.group(1)), m.group(2)


def start_rstudio(cli: CLI) -> tuple[dict[str, Any], int, str]:
    result = cli("rstudio", "--no-browser", "-d")
    assert result.exit_code == 0, result.output
    url, login = RSTUDIO_URL.search(result.stdout), LOGIN.search(result.stdout)
    assert url and login, result.output
    doc = next(r for r in runs(cli) if r["status"] == "RUNNING")
    return doc, int(url.group(1)), login.group(1)


def stop(cli: CLI, run_id: str) -> dict[str, Any]:
    result = cli("stop", run_id)
    assert result.exit_code == 0, result.output
    assert "STOPPED" in result.stdout, result.output
    doc = next(r for r in runs(cli) if r["id"] == run_id)
    assert doc["status"] == "STOPPED", doc
    assert doc["after_snapshot_id"], doc
    assert container_removed(run_id), f"the container of {run_id[:8]} is still there"
    return doc


# -- Jupyter Notebook ------------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.slow
def test_notebook_serves_the_project_and_its_after_snapshot_holds_new_notebook(
    notebook_project: Path, cli: CLI, tree: Callable[..., None], tmp_path: Path
) -> None:
    tree(notebook_project, {"train.py": "print('train')\n", "data": {"x.csv": "a,b\n1,2\n"}})
    doc, port, token = start_notebook(cli)
    assert doc["type"] == "notebook"
    assert doc["status"] == "RUNNING"

    status, page = get(f"http://127.0.0.1:{port}/tree?token={token}")
    assert status == 200 and b"Jupyter" in page
    status, body = get(f"http://127.0.0.1:{port}/api/contents", token)
    names = {item["name"] for item in json.loads(body)["content"]}
    assert {"train.py", "data", "Dockerfile"} <= names, names
    # A wrong token is refused: the server is not open to anyone on the machine.
    with pytest.raises(urllib.error.HTTPError) as refused:
        get(f"http://127.0.0.1:{port}/api/contents", "not-the-token")
    assert refused.value.code == 403

    bound_only_to_loopback(inspect_container(doc["id"]), "8888/tcp", port)

    status, made = put_json(
        f"http://127.0.0.1:{port}/api/contents/new.ipynb", token, EMPTY_NOTEBOOK
    )
    assert status == 201 and made["path"] == "new.ipynb"
    assert (notebook_project / "new.ipynb").is_file()

    final = stop(cli, doc["id"])
    out = tmp_path / "after"
    result = cli("snapshot", "checkout", final["after_snapshot_id"], "--to", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads((out / "new.ipynb").read_text())["nbformat"] == 4
    assert (out / "train.py").read_text() == "print('train')\n"
    diff = cli(
        "snapshot",
        "diff",
        doc["before_snapshot_id"],
        final["after_snapshot_id"],
        "--format",
        "json",
    )
    assert diff.exit_code == 0, diff.output
    changes = json.loads(diff.stdout)
    assert "new.ipynb" in changes["code"]["added"] + changes["files"]["added"], changes
    inspected = cli("snapshot", "inspect", final["after_snapshot_id"], "--format", "json")
    assert inspected.exit_code == 0, inspected.output


@pytest.mark.docker
@pytest.mark.slow
def test_notebook_token_is_stored_nowhere(notebook_project: Path, cli: CLI) -> None:
    doc, port, token = start_notebook(cli)
    assert token not in doc["command"]
    assert get(f"http://127.0.0.1:{port}/tree?token={token}")[0] == 200
    put_json(f"http://127.0.0.1:{port}/api/contents/new.ipynb", token, EMPTY_NOTEBOOK)
    # While it runs: nothing under .datmo (records, run-data logs, the task's HOME) holds it.
    assert files_holding(notebook_project / ".datmo", token) == []
    final = stop(cli, doc["id"])
    assert token not in json.dumps(final)
    assert token not in cli("logs", doc["id"]).stdout
    assert files_holding(notebook_project / ".datmo", token) == []


@pytest.mark.docker
@pytest.mark.slow
def test_notebook_token_is_fresh_each_session(notebook_project: Path, cli: CLI) -> None:
    first, _, token1 = start_notebook(cli)
    stop(cli, first["id"])
    second, port2, token2 = start_notebook(cli)
    try:
        assert token1 != token2
        assert len(token2) >= 24
        with pytest.raises(urllib.error.HTTPError) as refused:
            get(f"http://127.0.0.1:{port2}/api/contents", token1)
        assert refused.value.code == 403
    finally:
        stop(cli, second["id"])


@pytest.mark.docker
@pytest.mark.slow
def test_notebook_in_root_owned_project_allows_root(notebook_project: Path, cli: CLI) -> None:
    doc, _, _ = start_notebook(cli)
    assert doc["command"].endswith(" --allow-root"), doc["command"]
    assert inspect_container(doc["id"])["Config"]["User"] == "0:0"
    stop(cli, doc["id"])


@pytest.mark.docker
@pytest.mark.slow
def test_notebook_runs_as_the_project_owner(their_notebook_project: Path, cli: CLI) -> None:
    doc, port, token = start_notebook(cli)
    assert "--allow-root" not in doc["command"]
    container = inspect_container(doc["id"])
    assert container["Config"]["User"] == f"{UNUSED_UID}:{UNUSED_GID}"
    bound_only_to_loopback(container, "8888/tcp", port)

    put_json(f"http://127.0.0.1:{port}/api/contents/new.ipynb", token, EMPTY_NOTEBOOK)
    made = (their_notebook_project / "new.ipynb").stat()
    assert (made.st_uid, made.st_gid) == (UNUSED_UID, UNUSED_GID)
    stop(cli, doc["id"])


@pytest.mark.docker
@pytest.mark.slow
def test_notebook_bare_port_number_is_the_host_port(notebook_project: Path, cli: CLI) -> None:
    wanted = free_port()
    doc, port, token = start_notebook(cli, "-p", str(wanted))
    assert port == wanted
    bound_only_to_loopback(inspect_container(doc["id"]), "8888/tcp", wanted)
    assert get(f"http://127.0.0.1:{wanted}/api/contents", token)[0] == 200
    stop(cli, doc["id"])


@pytest.mark.docker
def test_notebook_on_a_taken_port_is_refused(notebook_project: Path, cli: CLI) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        taken = holder.getsockname()[1]
        result = cli("notebook", "--no-browser", "-d", "-p", str(taken))
    assert result.exit_code != 0
    assert str(taken) in one_line_error(result)
    assert runs(cli) == []
    pid = project_id(notebook_project)
    assert docker("ps", "-aq", "--filter", f"label=datmo.project={pid}").split() == []


@pytest.mark.docker
def test_notebook_needs_the_server_in_the_environment(
    docker_project: Path, python_image: str, cli: CLI
) -> None:
    (docker_project / "Dockerfile").write_text(dockerfile(python_image))
    built = cli("environment", "build")  # its build output is not the error under test
    assert built.exit_code == 0, built.output
    (image,) = docker(
        "images",
        "-q",
        "--no-trunc",
        "--filter",
        f"label=datmo.project={project_id(docker_project)}",
    ).split()

    since = str(int(time.time()) - 1)
    result = cli("notebook", "--no-browser", "-d")
    until = str(int(time.time()) + 1)
    assert result.exit_code == 125, result.output
    message = one_line_error(result)
    assert "'datmo environment setup jupyter'" in message, message
    assert "RUN pip install notebook" in message, message
    assert runs(cli) == []
    # Other tests may run at the same time, so only containers of this project's image
    # count (a global `docker ps -a` count would not be stable): none started, none left.
    events = docker(
        "events",
        "--since",
        since,
        "--until",
        until,
        "--filter",
        "type=container",
        "--filter",
        f"image={image}",
        "--format",
        "{{.Action}}",
    ).split()
    assert "start" not in events, events
    assert docker("ps", "-aq", "--filter", f"ancestor={image}").split() == []


def test_notebook_without_an_engine_fails_in_one_line(
    project: Path, cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "Dockerfile").write_text("FROM datmo-test/jupyter:latest\n")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    result = cli("notebook", "--no-browser", "-d", "--executor", "docker")
    assert result.exit_code == 125, result.output
    assert "nonexistent.sock" in one_line_error(result)
    monkeypatch.delenv("DOCKER_HOST")
    assert runs(cli) == []


@pytest.mark.docker
@pytest.mark.slow
def test_stopping_an_ended_workspace_says_so(notebook_project: Path, cli: CLI) -> None:
    doc, _, _ = start_notebook(cli)
    stop(cli, doc["id"])
    again = cli("stop", doc["id"][:8])
    assert again.exit_code != 0
    assert "not running" in one_line_error(again)
    assert only_run(cli)["status"] == "STOPPED"


@pytest.mark.docker
@pytest.mark.slow
def test_ls_shows_the_workspace_type(notebook_project: Path, cli: CLI) -> None:
    doc, _, _ = start_notebook(cli)
    try:
        assert only_run(cli)["type"] == "notebook"
        table = cli("ls")
        assert table.exit_code == 0, table.output
        header, _, row = table.stdout.splitlines()[:3]
        assert "type" in header.split(), table.stdout
        column = header.split().index("type")
        assert row.split()[column] == "notebook", table.stdout
    finally:
        stop(cli, doc["id"])


@pytest.mark.docker
@pytest.mark.slow
def test_killed_foreground_notebook_is_stopped_and_recorded(
    notebook_project: Path, cli: CLI
) -> None:
    with datmo_process(["notebook", "--no-browser"], notebook_project) as proc:
        read_until(proc, NOTEBOOK_URL, timeout=120)
        run_id = only_run(cli)["id"]
        assert containers_of(run_id)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    final = wait_finished(cli, run_id)
    assert final["status"] == "STOPPED", final
    assert final["after_snapshot_id"], final
    assert container_removed(run_id)


# -- RStudio Server (a stand-in image) -------------------------------------------------


@pytest.mark.docker
def test_rstudio_container_contract(their_rstudio_project: Path, cli: CLI) -> None:
    began = time.monotonic()
    doc, port, password = start_rstudio(cli)
    waited = time.monotonic() - began
    # It returned only once the server answered: the stand-in serves after a pause.
    assert waited >= RSTUDIO_SERVE_DELAY_S, waited
    assert get(f"http://127.0.0.1:{port}/")[0] == 200
    assert doc["type"] == "rstudio"

    container = inspect_container(doc["id"])
    assert container["Config"]["User"] in ("0:0", "0", "root", "")
    env = dict(e.split("=", 1) for e in container["Config"]["Env"])
    assert env["USERID"] == str(UNUSED_UID)
    assert env["GROUPID"] == str(UNUSED_GID)
    assert env["PASSWORD"] == password
    bound_only_to_loopback(container, "8787/tcp", port)
    reported = (their_rstudio_project / "rstudio-env.txt").read_text().split()
    assert reported == [f"USERID={UNUSED_UID}", f"GROUPID={UNUSED_GID}", "UID_NOW=0"]

    final = stop(cli, doc["id"])
    log = cli("logs", doc["id"]).stdout
    assert f"PWSHA={hashlib.sha256(password.encode()).hexdigest()}" in log, log
    assert "PASSWORD=***" in log, log
    assert password not in log
    assert password not in json.dumps(final)
    assert files_holding(their_rstudio_project / ".datmo", password) == []


@pytest.mark.docker
def test_rstudio_password_is_fresh_each_session(their_rstudio_project: Path, cli: CLI) -> None:
    first, _, password1 = start_rstudio(cli)
    stop(cli, first["id"])
    second, _, password2 = start_rstudio(cli)
    stop(cli, second["id"])
    assert password1 != password2
    assert len(password1) >= 16


# -- datmo.snapshot.create() inside a task ----------------------------------------------

SNAPSHOT_SCRIPT = """\
import json
import datmo
with open("made-by-task.txt", "w") as f:
    f.write("task output\\n")
made = datmo.snapshot.create(message="from cell", stats={"acc": 1})
print("RESULT " + json.dumps(made))
"""


def check_snapshot_from_task(cli: CLI, root: Path, *run_args: str) -> None:
    (root / "snap.py").write_text(SNAPSHOT_SCRIPT)
    result = cli("run", *run_args, "python3 snap.py")
    assert result.exit_code == 0, result.output
    m = re.search(r"RESULT (.*)", result.stdout)
    assert m, result.output
    made = json.loads(m.group(1))
    assert isinstance(made, dict) and made.get("id"), made
    listed = json.loads(cli("snapshot", "ls", "--format", "json").stdout)
    mine = [s for s in listed if s["id"] == made["id"]]
    assert mine, listed
    assert mine[0]["message"] == "from cell"
    assert mine[0]["metrics"] == {"acc": 1}
    out = root.parent / "from-cell"
    assert cli("snapshot", "checkout", made["id"], "--to", str(out)).exit_code == 0
    assert (out / "made-by-task.txt").read_text() == "task output\n"


def test_snapshot_create_inside_a_local_task(project: Path, cli: CLI) -> None:
    check_snapshot_from_task(cli, project, "--executor", "local")


@pytest.mark.docker
def test_snapshot_create_inside_a_docker_task(
    docker_project: Path, python_image: str, cli: CLI
) -> None:
    (docker_project / "Dockerfile").write_text(dockerfile(python_image))
    try:
        check_snapshot_from_task(cli, docker_project, "--executor", "docker")
    finally:
        remove_leftovers(docker_project)


@pytest.mark.docker
def test_rstudio_without_rstudio_says_how_to_get_it(
    docker_project: Path, cli: CLI, busybox_image: str
) -> None:
    (docker_project / "Dockerfile").write_text(f"FROM {busybox_image}\n")
    assert cli("environment", "build").exit_code == 0  # its output is not under test
    result = cli("rstudio", "--no-browser", "-d")
    assert result.exit_code == 125, result.output
    message = one_line_error(result)
    assert "'datmo environment setup rstudio'" in message, message
    assert "base your Dockerfile on an RStudio Server image, such as 'FROM rocker/rstudio'" in (
        message
    )
    assert "not a package" not in message
    assert runs(cli) == []
