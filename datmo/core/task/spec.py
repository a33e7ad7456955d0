"""Validated options of `datmo run` (and workspaces): every bad value is refused
here, with a one-line message, before any snapshot, record or container exists."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datmo.errors import UsageError

SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL")
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
_MEM = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


@dataclass(frozen=True)
class Port:
    host_ip: str
    host_port: int  # 0: any free port
    container_port: int
    protocol: str = "tcp"

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.host_port}:{self.container_port}/{self.protocol}"


@dataclass(frozen=True)
class DataMount:
    source: str  # absolute host path
    name: str  # mounted at /data/<name>
    writable: bool = False


@dataclass
class RunSpec:
    command: str
    executor: str = "docker"
    environment: str | None = None
    gpus: str | None = None  # "all" or "0,1"
    ports: list[Port] = field(default_factory=list)
    memory: int | None = None
    cpus: float | None = None
    data: list[DataMount] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # values in memory only
    config: dict[str, Any] = field(default_factory=dict)  # -c, typed
    config_text: dict[str, str] = field(default_factory=dict)  # -c, as typed (placeholders)
    config_file: str | None = None  # --config-file: the project's config file instead
    cwd: str = ""  # where the task starts, relative to the project (a subfolder)
    tags: list[str] = field(default_factory=list)
    isolated: bool = False  # in a working copy of its own, not the working tree
    keep_workdir: bool = False  # keep that copy when the run fails
    num_gpus: int = 0  # GPUs by count, handed out by a queue worker
    priority: int = 0
    retry: int = 0  # a queued run LOST with its worker is queued again this many times
    message: str | None = None
    detach: bool = False
    interactive: bool = False
    capture: bool = True
    type: str = "task"
    as_root: bool = False  # RStudio images start as root, then switch to USERID:GROUPID

    def secret_names(self) -> list[str]:
        return sorted(k for k in self.env if is_secret(k))

    def public_env(self) -> dict[str, str]:
        return {k: v for k, v in self.env.items() if not is_secret(k)}

    def options(self) -> dict[str, Any]:
        """What the record keeps to rerun this exactly (never secret values)."""
        return {
            "executor": self.executor,
            "gpus": self.gpus,
            "ports": [str(p) for p in self.ports],
            "memory": self.memory,
            "cpus": self.cpus,
            "data": [[d.source, d.name, d.writable] for d in self.data],
            "capture": self.capture,
            "interactive": self.interactive,
            "detach": self.detach,
            "as_root": self.as_root,
            "cwd": self.cwd,
            "config_file": self.config_file,
            "keep_workdir": self.keep_workdir,
            "num_gpus": self.num_gpus,
        }


def is_secret(name: str) -> bool:
    upper = name.upper()
    return any(word in upper for word in SECRET_WORDS)


def parse_memory(text: str) -> int:
    m = _MEM.match(text) if len(text) < 40 else None
    if not m:
        raise UsageError(f"--memory '{text}' is not a size; use a number with b, k, m or g (4g)")
    value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value > 1 << 60:
        raise UsageError(f"--memory '{text}' is larger than any machine; use a size such as 4g")
    if value < 6 << 20:
        raise UsageError(f"--memory '{text}' is too small; Docker needs at least 6m")
    return value


def parse_cpus(text: str | float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--cpus '{text}' is not a number; give one such as 2 or 0.5") from None
    if not value > 0 or value > (os.cpu_count() or 1) * 64:
        raise UsageError(f"--cpus {text} is out of range; give a positive number such as 2")
    return value


def parse_gpus(text: str) -> str:
    t = text.strip().lower()
    if t == "all":
        return "all"
    ids = [p.strip() for p in t.split(",")]
    if not ids or not all(p.isdigit() for p in ids) or len(set(ids)) != len(ids):
        raise UsageError(f"--gpus '{text}' must be 'all' or GPU indexes such as 0,1")
    return ",".join(ids)


def parse_port(text: str, check_free: bool = True) -> Port:
    """HOST:CONTAINER, CONTAINER, or IP:HOST:CONTAINER, optionally /tcp or /udp."""
    spec, _, proto = text.strip().partition("/")
    proto = proto or "tcp"
    parts = spec.rsplit(":", 2) if spec.count(":") <= 2 else []
    bad = UsageError(
        f"-p '{text}' is not a port mapping; use HOST:CONTAINER (8888:8888) or "
        "IP:HOST:CONTAINER (0.0.0.0:8888:8888)"
    )
    if proto not in ("tcp", "udp") or not parts or not all(parts):
        raise bad
    ip = parts[0] if len(parts) == 3 else "127.0.0.1"
    nums = parts[-2:] if len(parts) >= 2 else ["0", parts[0]]
    if not all(n.isdigit() for n in nums):
        raise bad
    host_port, container_port = int(nums[0]), int(nums[1])
    if not (0 <= host_port <= 65535 and 0 < container_port <= 65535):
        raise UsageError(f"-p '{text}': ports must be between 1 and 65535")
    try:
        socket.inet_aton(ip)
    except OSError:
        raise UsageError(f"-p '{text}': '{ip}' is not an IPv4 address") from None
    port = Port(ip, host_port, container_port, proto)
    if check_free and host_port:
        ensure_port_free(port)
    return port


def ensure_port_free(port: Port) -> None:
    kind = socket.SOCK_STREAM if port.protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((port.host_ip, port.host_port))
        except OSError as e:
            raise UsageError(
                f"port {port.host_ip}:{port.host_port} is not free ({e.strerror}); "
                "pick another with -p HOST:CONTAINER"
            ) from None


def parse_data(text: str) -> DataMount:
    """PATH[>NAME][:rw] -> mounted at /data/NAME, read-only unless :rw."""
    spec, writable = text, False
    if spec.endswith(":rw") or spec.endswith(":ro"):
        spec, writable = spec[:-3], spec.endswith(":rw")
    src, _, name = spec.partition(">")
    path = Path(os.path.expanduser(src.strip()))  # unknown ~user stays as typed
    try:
        found = bool(src.strip()) and path.exists()
    except OSError as e:
        raise UsageError(f"--data: cannot use '{src.strip()[:80]}': {e.strerror}") from None
    if not found:
        raise UsageError(f"--data: no such file or folder '{src.strip()}'")
    real = os.path.realpath(path)
    if real in DOCKER_SOCKETS or real.endswith("/docker.sock"):
        raise UsageError("--data: the Docker socket is never mounted into a task")
    name = name.strip() or Path(real).name
    if "/" in name or name in ("", ".", ".."):
        raise UsageError(f"--data: '{name}' is not a plain name for /data/NAME")
    return DataMount(real, name, writable)


def parse_env(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """-e KEY=VALUE, or -e KEY to pass the caller's value, as `docker run` does."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise UsageError(f"-e '{item}' is not KEY=VALUE with a valid variable name")
        if not eq:
            if key not in os.environ:
                raise UsageError(f"-e {key}: not set in your environment; use -e {key}=VALUE")
            value = os.environ[key]
        out[key] = value
    return out
