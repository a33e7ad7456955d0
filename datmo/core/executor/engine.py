"""The Docker engine: one cached client, cheap liveness checks, and image builds.

The docker SDK (and the requests stack under it) costs ~150 ms to import, so it
is imported only inside the functions that talk to the engine through it.
`engine_answers` and `image_tags` speak plain HTTP to a local socket instead,
so `datmo init` and `datmo environment ls` never import it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import sys
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from datmo.errors import BuildFailed, EngineUnavailable, NotFound

if TYPE_CHECKING:
    import tarfile

    import docker as docker_sdk

DEFAULT_HOST = "unix:///var/run/docker.sock"
CONNECT_TIMEOUT_S = 10  # first contact: a dead host should fail fast
TIMEOUT_S = 120  # later calls (a big image removal can be slow); builds stream with none
RAW_TIMEOUT_S = 2.0
TAIL_LINES = 10
_ENV_KEYS = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")

# One client per engine address: tests and long-lived callers may change DOCKER_HOST.
_clients: dict[tuple[str, ...], docker_sdk.DockerClient] = {}


def host() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def unavailable_message() -> str:
    return (
        f"no Docker engine answers at {host()}; start it (for example 'sudo dockerd &' or "
        "'sudo systemctl start docker'), or run without Docker: --executor local"
    )


def client() -> docker_sdk.DockerClient:
    """The engine's client, made once per process (and per DOCKER_HOST) and pinged."""
    key = tuple(os.environ.get(k, "") for k in _ENV_KEYS)
    cached = _clients.get(key)
    if cached is not None:
        return cached
    try:
        import docker
    except ImportError as e:
        raise EngineUnavailable(
            f"the docker Python package cannot be imported ({e}); 'pip install docker', "
            "or run without Docker: --executor local"
        ) from None
    try:
        made = docker.from_env(timeout=CONNECT_TIMEOUT_S)
        made.ping()
    except Exception as e:  # DockerException, requests' errors, OSError: all mean "no engine"
        raise EngineUnavailable(unavailable_message()) from e
    made.api.timeout = TIMEOUT_S
    _clients[key] = made
    return made


def engine_answers() -> bool:
    """True when an engine answers and the SDK is installed. Never raises."""
    import importlib.util

    if importlib.util.find_spec("docker") is None:
        return False
    try:
        answer = _raw_get("/_ping")
    except OSError:
        return False
    if answer is not None:
        return answer[0] == 200
    try:  # TLS or ssh: only the SDK knows how to reach it
        client()
    except EngineUnavailable:
        return False
    return True


def image_tags(repository: str) -> set[str] | None:
    """'repo:tag' names of local images in `repository`, or None where one plain
    request cannot tell (no engine, or an engine only the SDK can reach)."""
    query = quote(json.dumps({"reference": [repository]}), safe="")
    try:
        answer = _raw_get(f"/images/json?filters={query}")
    except OSError:
        return None
    if answer is None or answer[0] != 200:
        return None
    try:
        images = json.loads(answer[1])
        return {t for img in images for t in img.get("RepoTags") or ()}
    except (ValueError, AttributeError, TypeError):
        return None


def _raw_get(path: str) -> tuple[int, bytes] | None:
    """GET `path` from the engine in plain HTTP/1.0 (the server then closes the
    connection when done, so no chunked bodies); None when that needs TLS or ssh."""
    parts = urlsplit(host())
    sock: socket.socket
    if parts.scheme in ("unix", "http+unix"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(RAW_TIMEOUT_S)
        try:
            sock.connect(parts.path or "/var/run/docker.sock")
        except OSError:
            sock.close()
            raise
    elif parts.scheme in ("tcp", "http") and not os.environ.get("DOCKER_TLS_VERIFY"):
        if parts.port == 2376:  # the conventional TLS port
            return None
        address = (parts.hostname or "localhost", parts.port or 2375)
        sock = socket.create_connection(address, timeout=RAW_TIMEOUT_S)
    else:
        return None
    with sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or not status[1].isdigit():
        raise OSError(f"not an HTTP answer from {host()}")
    return int(status[1]), body


# -- images -------------------------------------------------------------------


def image_id(tag: str) -> str | None:
    """The id of the local image `tag`, or None: one inspect request.

    Plain HTTP on a local socket where it can (no SDK import, ~100 ms saved per run),
    the SDK otherwise (TLS, ssh).
    """
    try:
        answer = _raw_get(f"/images/{quote(tag, safe='')}/json")
    except OSError as e:
        raise EngineUnavailable(unavailable_message()) from e
    if answer is not None:
        status, body = answer
        if status == 404:
            return None
        if status == 200:
            return str(json.loads(body)["Id"])
    import docker

    try:
        return str(client().images.get(tag).id)
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as e:
        raise EngineUnavailable(f"the Docker engine at {host()} failed: {e.explanation}") from e
    except OSError as e:
        raise EngineUnavailable(unavailable_message()) from e


def remove_images(label: str) -> int:
    """Remove every local image carrying `label` (KEY=VALUE); returns how many went."""
    import docker

    api = client().api
    removed = 0
    for img in api.images(filters={"label": label}):
        # Tags first: an image with several tags only goes when the last one does.
        refs = [t for t in img.get("RepoTags") or () if t != "<none>:<none>"] or [img["Id"]]
        for ref in refs:
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_image(ref, force=True)
        removed += 1
    return removed


def remove_stale(image: str) -> None:
    """Remove an image a rebuild replaced; one still in use by a container stays."""
    import docker

    with contextlib.suppress(docker.errors.APIError):
        client().api.remove_image(image)


def build_context(files: Mapping[str, bytes]) -> bytes:
    """An uncompressed tar of exactly `files`, reproducible (fixed times, owners, modes).

    Scripts (a '#!' first line) are executable so `COPY run.sh` keeps working;
    everything else is 0644.
    """
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        folders: set[str] = set()
        for name in sorted(files):
            parts = name.split("/")
            for i in range(1, len(parts)):
                folder = "/".join(parts[:i])
                if folder not in folders:
                    folders.add(folder)
                    tar.addfile(_tarinfo(folder, tarfile.DIRTYPE, 0o755, 0))
            data = files[name]
            mode = 0o755 if data.startswith(b"#!") else 0o644
            tar.addfile(_tarinfo(name, tarfile.REGTYPE, mode, len(data)), io.BytesIO(data))
    return buf.getvalue()


def _tarinfo(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    import tarfile

    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


class ImageBuildFailed(BuildFailed):
    """A BuildFailed that also holds the last lines of the build output."""

    def __init__(self, message: str, tail: list[str]) -> None:
        super().__init__(message)
        self.tail = tail


def build_image(
    context: bytes,
    tag: str,
    labels: dict[str, str],
    build_args: Mapping[str, str],
    what: str,
    progress: Callable[[str], None] | None = None,
    no_cache: bool = False,
) -> str:
    """Build `context` (a tar holding a Dockerfile) as `tag`, streaming each output
    line to `progress`; returns the image id. `what` names it in error messages."""
    import docker

    api = client().api
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    error: str | None = None
    pending = ""

    def emit(line: str) -> None:
        tail.append(line)
        if progress is not None:
            progress(line)

    try:
        stream = api.build(
            fileobj=io.BytesIO(context),
            custom_context=True,
            dockerfile="Dockerfile",
            tag=tag,
            labels=labels,
            buildargs=dict(build_args),
            nocache=no_cache,
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        )
        for chunk in stream:
            if "stream" in chunk:
                pending += str(chunk["stream"])
                *lines, pending = pending.split("\n")
                for line in lines:
                    if line.strip():
                        emit(line.rstrip())
            elif "error" in chunk:
                error = str(chunk.get("errorDetail", {}).get("message") or chunk["error"])
            elif "status" in chunk and "progress" not in chunk:
                emit(" ".join(str(chunk[k]) for k in ("id", "status") if chunk.get(k)))
    except docker.errors.APIError as e:  # refused before it streamed: a bad Dockerfile, say
        error = str(e.explanation or e)
    except OSError as e:  # the engine went away part-way (requests' errors are OSErrors)
        raise EngineUnavailable(unavailable_message()) from e
    if pending.strip():
        emit(pending.rstrip())
    if error is not None:
        lines = [line.strip() for line in error.splitlines() if line.strip()] or ["unknown error"]
        for line in lines:
            emit(line)
        raise ImageBuildFailed(f"{what} did not build: {lines[-1]}", list(tail))
    found = image_id(tag)
    if found is None:
        raise ImageBuildFailed(f"{what} did not build: the engine made no image {tag}", list(tail))
    return found


def write_tail(tail: list[str]) -> None:
    """Show a failed build's last lines on stderr, where the one-line error cannot."""
    sys.stderr.write("".join(f"  | {line}\n" for line in tail))
    sys.stderr.flush()


# -- Dockerfiles ----------------------------------------------------------------

_CONTINUED = re.compile(r"\\[ \t]*\r?\n")
_GLOB = re.compile(r"[*?\[]")


def copied_sources(dockerfile: str) -> list[str]:
    """The local sources of a Dockerfile's COPY and ADD instructions, in order.

    Skips `--from=` copies (from another stage or image), URLs and anything
    with a variable. Sources are as written: a file, a folder, '.', or a glob.
    """
    text = _CONTINUED.sub(" ", dockerfile)
    found: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        word, _, rest = line.partition(" ")
        if word.upper() not in ("COPY", "ADD"):
            continue
        args = _split_args(rest.strip())
        flags = [a for a in args if a.startswith("--")]
        if any(f.startswith("--from") for f in flags):
            continue
        sources = [a for a in args if not a.startswith("--")][:-1]
        for src in sources:
            if "://" in src or src.startswith("git@") or "$" in src:
                continue
            found.append(src)
    return found


def _split_args(rest: str) -> list[str]:
    import shlex

    flags: list[str] = []
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        flags.append(flag)
        rest = rest.strip()
    if rest.startswith("["):
        with contextlib.suppress(ValueError):
            value = json.loads(rest)
            if isinstance(value, list):
                return flags + [str(v) for v in value]
    try:
        return flags + shlex.split(rest)
    except ValueError:
        return flags + rest.split()


def project_definition(root: Path) -> tuple[dict[str, bytes], list[tuple[str, str]]]:
    """The root Dockerfile plus the files its COPY/ADD lines name that exist beside it.

    Folders (and '.') are left out: the project's code reaches a run another way,
    and a context of the whole project would make every edit a new environment.
    """
    path = root / "Dockerfile"
    if not path.is_file():
        raise NotFound(
            f"no Dockerfile in the project root {root}; pass --paths PATH/Dockerfile, or use "
            "a built-in one (see 'datmo environment setup --list')"
        )
    data = path.read_bytes()
    files = {"Dockerfile": data}
    skipped: list[tuple[str, str]] = []
    real_root = root.resolve()
    for src in copied_sources(data.decode("utf-8", "replace")):
        rel = src.lstrip("/")  # COPY sources are relative to the context, even with a '/'
        if rel.rstrip("/") in ("", ".") or ".." in PurePosixPath(rel).parts:
            skipped.append((src, "the whole folder, or outside it"))
            continue
        matches = sorted(root.glob(rel)) if _GLOB.search(rel) else [root / rel]
        found = False
        for match in matches:
            inside = match.resolve().is_relative_to(real_root)
            name = match.relative_to(root).as_posix()
            if match.is_file() and inside and not name.startswith(".datmo/"):
                files[name] = match.read_bytes()
                found = True
            elif match.is_dir():
                skipped.append((name, "a folder; add it with --paths"))
                found = True
        if not found:
            skipped.append((src, "not found"))
    return files, skipped
