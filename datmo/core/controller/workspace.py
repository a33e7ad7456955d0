"""Workspaces: Jupyter Notebook, JupyterLab, RStudio Server or a terminal, as runs.

A workspace is a run of its own type: the same container contract as
`datmo run`, before and after snapshots, a supervisor that stops and records
it. The server listens on every interface inside the container, and is
published on 127.0.0.1 only; a fresh token or password is passed by
environment variable (a secret: never stored or logged).
"""

from __future__ import annotations

import os
import secrets
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from datmo.core.controller import run as runs
from datmo.core.controller import task
from datmo.core.entity.run import Run
from datmo.core.storage.project import ProjectContext
from datmo.core.task.spec import Port, RunSpec, ensure_port_free
from datmo.errors import DatmoError

READY_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Kind:
    name: str
    container_port: int
    command: str
    binary: str  # what the image must hold
    builtin: str  # the built-in environment that has it
    install: str  # how a Dockerfile gets it
    secret_env: str  # the variable carrying the token or password
    url_path: str = "/"
    ready_path: str = "/"
    as_root: bool = False  # RStudio's images start as root and switch to USERID:GROUPID
    extra: dict[str, str] = field(default_factory=dict)


JUPYTER = "jupyter {app} --ip=0.0.0.0 --port=8888 --no-browser"
KINDS = {
    "notebook": Kind(
        "notebook",
        8888,
        JUPYTER.format(app="notebook"),
        "jupyter-notebook",
        "jupyter",
        "add 'RUN pip install notebook' to your Dockerfile",
        "JUPYTER_TOKEN",
        "/tree",
        "/api/status",
    ),
    "jupyterlab": Kind(
        "jupyterlab",
        8888,
        JUPYTER.format(app="lab"),
        "jupyter-lab",
        "jupyter",
        "add 'RUN pip install jupyterlab' to your Dockerfile",
        "JUPYTER_TOKEN",
        "/lab",
        "/api/status",
    ),
    "rstudio": Kind(
        "rstudio",
        8787,
        "/init",
        "/usr/lib/rstudio-server/bin/rserver",
        "rstudio",
        "base your Dockerfile on an RStudio Server image, such as 'FROM rocker/rstudio'",
        "PASSWORD",
        "/",
        "/",
        as_root=True,
    ),
}


@dataclass
class Opened:
    run: Run
    url: str
    login: str | None  # RStudio: "user rstudio, password ..."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_server(image: str, kind: Kind, project_id: str) -> None:
    """Refuse an image that lacks the server, before any container starts.

    A created container is never started: its files are read through the API.
    """
    import docker.errors

    from datmo.core.executor.engine import client

    cli = client()
    env = cli.images.get(image).attrs.get("Config", {}).get("Env") or []
    path = next((e[5:] for e in env if e.startswith("PATH=")), "/usr/local/bin:/usr/bin:/bin")
    candidates = (
        [kind.binary]
        if kind.binary.startswith("/")
        else [f"{d.rstrip('/')}/{kind.binary}" for d in path.split(":") if d]
    )
    labels = {"datmo.probe": kind.name, "datmo.project": project_id}
    probe = cli.containers.create(image, command=["true"], entrypoint=[], labels=labels)
    try:
        for candidate in candidates:
            try:
                probe.get_archive(candidate)
                return
            except docker.errors.NotFound:
                continue
    finally:
        probe.remove(force=True)
    raise DatmoError(
        f"this environment has no {kind.binary}; use the built-in one "
        f"('datmo environment setup {kind.builtin}') or {kind.install}"
    )


def build_spec(kind: Kind, spec: RunSpec, host_port: int | None, owner_uid: int) -> int:
    """Fill in a workspace's command, port and secret; returns the host port."""
    port = host_port or free_port()
    ensure_port_free(Port("127.0.0.1", port, kind.container_port))
    spec.ports.insert(0, Port("127.0.0.1", port, kind.container_port))
    spec.type = kind.name
    spec.command = kind.command
    if kind.name in ("notebook", "jupyterlab") and owner_uid == 0:
        spec.command += " --allow-root"  # only a root-owned project runs Jupyter as root
    spec.env[kind.secret_env] = secrets.token_urlsafe(24)
    spec.as_root = kind.as_root
    return port


def open_workspace(
    ctx: ProjectContext,
    kind_name: str,
    spec: RunSpec,
    host_port: int | None,
    progress: task.Progress,
) -> Opened:
    kind = KINDS[kind_name]
    owner_uid = os.stat(ctx.root).st_uid
    port = build_spec(kind, spec, host_port, owner_uid)
    if spec.executor == "docker":
        env_id, image = runs.resolve_environment(ctx, spec, progress)
        assert image is not None
        check_server(image, kind, ctx.info.id)
        spec.environment = env_id
        # Jupyter's runtime files hold the token: keep them inside the container, not in HOME.
        spec.env.setdefault("JUPYTER_RUNTIME_DIR", "/tmp/jupyter-runtime")
    elif kind.as_root:
        raise DatmoError(f"{kind.name} needs Docker; drop --executor local")
    else:
        image = None
    secret = spec.env[kind.secret_env]
    run = (
        runs.start(ctx, spec, progress, image_id=image)
        if image
        else runs.start(ctx, spec, progress)
    )
    try:
        _wait_ready(ctx, run, port, kind, secret)
    except BaseException:
        task.request_stop(ctx, run)
        raise
    if kind.secret_env == "JUPYTER_TOKEN":
        return Opened(run, f"http://127.0.0.1:{port}{kind.url_path}?token={secret}", None)
    return Opened(run, f"http://127.0.0.1:{port}/", f"user rstudio, password {secret}")


def _wait_ready(ctx: ProjectContext, run: Run, port: int, kind: Kind, secret: str) -> None:
    url = f"http://127.0.0.1:{port}{kind.ready_path}"
    headers = {"Authorization": f"token {secret}"} if kind.secret_env == "JUPYTER_TOKEN" else {}
    deadline = time.monotonic() + READY_TIMEOUT_S
    # Straight to 127.0.0.1: a proxy from the environment must not see the token.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(url, headers=headers)
            with opener.open(req, timeout=2):
                return
        except urllib.error.HTTPError as e:
            if e.code < 500 and kind.secret_env != "JUPYTER_TOKEN":
                return  # RStudio answers its sign-in page with a redirect or 401
        except (urllib.error.URLError, OSError):
            pass
        current = runs.get(ctx, run.id)
        if current.finished:
            raise DatmoError(
                f"the {kind.name} server ended before it answered ({current.status}); "
                f"see 'datmo logs {run.id[:8]}'"
            )
        time.sleep(0.25)
    raise DatmoError(f"the {kind.name} server did not answer within {READY_TIMEOUT_S:.0f}s")
