"""Tasks in Docker containers, through the Docker SDK.

The container contract: the project is the working folder, `.datmo` is hidden
behind an empty read-only mount, HOME is a per-project folder outside the
project, the task runs as the project's owner, ports bind to 127.0.0.1 unless
asked otherwise, never privileged, never the Docker socket.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from datmo.core.executor import INT_GRACE_S, TERM_GRACE_S, TaskContext, shell_argv
from datmo.errors import DatmoError
from datmo.task_sdk import PATH as SDK_PATH

WORKDIR = "/workspace"
HOME = "/home/datmo"
SDK_MOUNT = "/opt/datmo-sdk"
METRICS = "/datmo/metrics.jsonl"
REPLIES = "/datmo/replies"
CONFIG = "/datmo/config.json"


def container_config(
    task: TaskContext, image: str, image_env: list[str] | None = None
) -> dict[str, Any]:
    """Keyword arguments for containers.create(); separate so tests can read the contract.

    image_env: the image's own ENV lines, so that a PYTHONPATH it sets is kept."""
    from docker.types import DeviceRequest, Mount

    run, opts = task.run, task.run.options
    mounts = [
        Mount(WORKDIR, str(task.workdir), type="bind"),
        Mount(f"{WORKDIR}/.datmo", None, type="tmpfs", read_only=True, tmpfs_size=4096),
        Mount(HOME, str(task.home), type="bind"),
        Mount(SDK_MOUNT, str(SDK_PATH), type="bind", read_only=True),
        Mount(METRICS, str(task.metrics_file), type="bind"),
        Mount(CONFIG, str(task.config_file), type="bind", read_only=True),
        Mount(REPLIES, str(task.metrics_file.parent / "replies"), type="bind", read_only=True),
    ]
    for source, name, writable in opts.get("data", []):
        mounts.append(Mount(f"/data/{name}", source, type="bind", read_only=not writable))
    ports: dict[str, Any] = {}
    for spec in opts.get("ports", []):
        ip, host, rest = spec.split(":")
        container, _, proto = rest.partition("/")
        ports[f"{container}/{proto or 'tcp'}"] = (ip, int(host) or None)
    devices = []
    gpus = opts.get("gpus")
    if gpus == "all":
        devices = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    elif gpus:
        devices = [DeviceRequest(device_ids=gpus.split(","), capabilities=[["gpu"]])]
    env = dict(task.env)
    # The SDK's folder goes first on the task's PYTHONPATH, before -e PYTHONPATH's or the
    # image's own, which are kept.
    theirs = env.get("PYTHONPATH") or _image_value(image_env or [], "PYTHONPATH")
    env.update(task.config_env(CONFIG))
    env.update(
        PYTHONPATH=":".join(p for p in (SDK_MOUNT, theirs) if p),
        PYTHONUNBUFFERED="1",
        DATMO_METRICS_FILE=METRICS,
        DATMO_REPLIES=REPLIES,
        DATMO_RUN_ID=run.id,
        # The engine's init (tini) is PID 1 and passes `datmo stop` to the whole process
        # group: `sh -c` alone would swallow SIGTERM and the task would only ever be killed.
        TINI_KILL_PROCESS_GROUP="1",
    )
    user = f"{task.owner[0]}:{task.owner[1]}"
    if opts.get("as_root"):
        # The image's own init switches to this uid:gid (rocker's USERID/GROUPID settings).
        user = "0:0"
        env.update(USERID=str(task.owner[0]), GROUPID=str(task.owner[1]))
    else:
        env.update(HOME=HOME, USER=task.user_name)
    interactive = bool(opts.get("interactive"))
    cpus = opts.get("cpus")
    return {
        "image": image,
        "command": shell_argv(run.command),
        "name": f"datmo-{run.id[:12]}",
        "working_dir": f"{WORKDIR}/{task.cwd}" if task.cwd else WORKDIR,
        "user": user,
        "environment": env,
        "mounts": mounts,
        "ports": ports,
        "device_requests": devices or None,
        "mem_limit": opts.get("memory"),
        "nano_cpus": int(cpus * 1e9) if cpus else None,
        "labels": {"datmo.run": run.id, **task.extra.get("labels", {})},
        "privileged": False,
        "init": True,
        "stdin_open": interactive,
        "tty": interactive,
        "detach": True,
    }


def _image_value(env: list[str], name: str) -> str | None:
    for line in env:
        key, eq, value = line.partition("=")
        if eq and key == name:
            return value
    return None


def _why(e: Exception) -> str:
    text = str(getattr(e, "explanation", None) or e).strip().splitlines()[0]
    if "could not select device driver" in text or "nvidia" in text.lower():
        return (
            "this Docker engine has no GPU runtime (install the NVIDIA Container Toolkit), "
            "or run without --gpu"
        )
    if "port is already allocated" in text or "address already in use" in text:
        return f"a requested port is taken ({text}); pick another with -p HOST:CONTAINER"
    return text


class DockerHandle:
    def __init__(self, container: Any, info: dict[str, Any], stream: Any) -> None:
        self.container = container
        self.info = info
        self.stream = stream
        self._stdin: Any = None

    def output(self) -> Iterator[bytes]:
        yield from self.stream

    def wait(self) -> int:
        return int(self.container.wait()["StatusCode"])

    def send_input(self, data: bytes) -> None:
        if self._stdin is None:
            from datmo.core.executor.engine import client

            params = {"stdin": 1, "stream": 1}
            self._stdin = client().api.attach_socket(self.container.id, params=params)
        sock = getattr(self._stdin, "_sock", self._stdin)
        sock.sendall(data)

    def resize(self, rows: int, cols: int) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.APIError):
            self.container.resize(height=rows, width=cols)

    def stop(self) -> None:
        import docker.errors
        import requests.exceptions

        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            self.container.kill(signal="SIGINT")  # the engine's init passes it to the task
            try:
                self.container.wait(timeout=INT_GRACE_S)
                return
            except (requests.exceptions.ConnectionError, requests.exceptions.ReadTimeout):
                pass  # still running: SIGTERM, then SIGKILL
            self.container.stop(timeout=int(TERM_GRACE_S))

    def late_info(self, wait: bool = False) -> dict[str, Any]:
        return {}  # the image says what the task runs with, and it is known at start

    def cleanup(self) -> None:
        remove_container(self.container.id)


def remove_run_containers(run_id: str, container_id: str | None) -> None:
    from datmo.core.executor.engine import client

    found = client().containers.list(all=True, filters={"label": f"datmo.run={run_id}"})
    for cid in {c.id for c in found} | ({container_id} if container_id else set()):
        remove_container(cid)


def remove_container(container_id: str) -> None:
    import docker.errors

    from datmo.core.executor.engine import client

    with contextlib.suppress(docker.errors.NotFound):
        try:
            client().containers.get(container_id).remove(force=True)
        except docker.errors.APIError as e:
            if "removal of container" not in str(e) or "in progress" not in str(e):
                raise


class DockerExecutor:
    name = "docker"

    def start(self, task: TaskContext) -> DockerHandle:
        import docker.errors

        from datmo.core.executor.engine import client

        image = task.run.image_id
        if not image:
            raise DatmoError("the run has no image; build its environment first")
        try:
            image_env = client().images.get(image).attrs.get("Config", {}).get("Env")
        except docker.errors.ImageNotFound:
            raise DatmoError(f"image {image[:19]} is gone; run 'datmo environment build'") from None
        except docker.errors.APIError as e:
            raise DatmoError(f"could not read the image: {_why(e)}") from None
        task.start_folder()  # made as the project's owner, not by the engine as root
        config = container_config(task, image, image_env)
        try:
            container = client().containers.create(**config)
        except docker.errors.ImageNotFound:
            raise DatmoError(f"image {image[:19]} is gone; run 'datmo environment build'") from None
        except docker.errors.APIError as e:
            raise DatmoError(f"could not create the container: {_why(e)}") from None
        # Attached before it starts, so not a byte is missed; attach rather than the log,
        # which only hands out whole lines (an interactive prompt has none).
        stream = container.attach(stream=True, logs=True, stdout=True, stderr=True)
        try:
            container.start()
        except docker.errors.APIError as e:
            # The engine made the container before refusing to start it: leave nothing behind.
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
            raise DatmoError(f"could not start the task: {_why(e)}") from None
        info = {"container_id": container.id, "gpus": self._gpus(container, task)}
        return DockerHandle(container, info, stream)

    def _gpus(self, container: Any, task: TaskContext) -> list[str]:
        if not task.run.options.get("gpus"):
            return []
        try:
            code, out = container.exec_run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], user="0"
            )
        except Exception:  # the image may lack nvidia-smi; the request is still recorded
            return [f"requested: {task.run.options['gpus']}"]
        if code != 0:
            return [f"requested: {task.run.options['gpus']}"]
        return [line.strip() for line in out.decode(errors="replace").splitlines() if line.strip()]
