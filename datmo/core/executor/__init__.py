"""Where a task runs. Each backend is one module behind the small protocol below;
adding one (a remote engine, a cluster) touches one new module and `get`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from datmo.core.entity.run import Run
from datmo.core.storage.fsutil import Owner, makedirs
from datmo.errors import UsageError

EXECUTORS = ("docker", "local", "slurm")
# A stop is what a terminal's Ctrl-C would do, then firmer: SIGINT first (a script's
# `except KeyboardInterrupt:` saves its checkpoint), SIGTERM after INT_GRACE_S, SIGKILL
# after TERM_GRACE_S more.
INT_GRACE_S = 10.0
TERM_GRACE_S = 10.0
# Linux refuses an environment string longer than 128 KiB (MAX_ARG_STRLEN); half of it
# leaves room for the rest. A larger config reaches the task as a file only.
CONFIG_ENV_LIMIT = 64 * 1024


@dataclass
class TaskContext:
    """What a backend needs to start one task."""

    run: Run
    workdir: Path  # the project, or a rerun's scratch copy
    env: dict[str, str]  # the task's own variables, secrets included (memory only)
    metrics_file: Path
    config_file: Path  # the run's config as JSON, for $DATMO_CONFIG_FILE (read-only)
    home: Path  # per-project HOME (containers)
    owner: tuple[int, int]  # uid, gid the task runs as
    user_name: str
    extra: dict[str, Any] = field(default_factory=dict)
    cache: Path | None = None  # the project's cache folder (what a backend may keep)

    @property
    def cwd(self) -> str:
        """Where the task starts, relative to workdir: the subfolder `datmo run` was in."""
        return str(self.run.options.get("cwd") or "")

    def start_folder(self) -> Path:
        """The task's working folder: the same subfolder of its tree that `datmo run` was
        started in (made if the tree lacks it: a snapshot holds no empty folders)."""
        folder = self.workdir / self.cwd if self.cwd else self.workdir
        if not folder.is_dir():
            uid, gid = self.owner
            makedirs(folder, Owner(uid, gid) if os.geteuid() == 0 else None)
        return folder

    def config_env(self, file_in_task: str) -> dict[str, str]:
        """$DATMO_CONFIG (the JSON, unless too big for one variable) and $DATMO_CONFIG_FILE."""
        env = {"DATMO_CONFIG_FILE": file_in_task}
        text = json.dumps(self.run.config, sort_keys=True, ensure_ascii=False)
        if len(text.encode()) <= CONFIG_ENV_LIMIT:
            env["DATMO_CONFIG"] = text
        return env


class TaskHandle(Protocol):
    info: dict[str, Any]  # recorded on the run: container_id, image_id, gpus, platform

    def output(self) -> Iterator[bytes]:
        """The task's stdout and stderr, merged, until it ends."""
        ...

    def wait(self) -> int:
        """Block until the task ends; its exit code."""
        ...

    def stop(self) -> None:
        """Ask the task to end: SIGINT, then SIGTERM, then SIGKILL (the graces above)."""
        ...

    def cleanup(self) -> None:
        """Remove what the task left (its container)."""
        ...

    def late_info(self, wait: bool = False) -> dict[str, Any]:
        """Facts for the record found out while the task runs (a local task's packages,
        probed beside it), once, when they are known; wait: until they are."""
        ...

    def send_input(self, data: bytes) -> None:
        """Keystrokes for an interactive task."""
        ...

    def resize(self, rows: int, cols: int) -> None:
        """The size of the terminal an interactive task is shown in."""
        ...


class Executor(Protocol):
    name: str

    def start(self, task: TaskContext) -> TaskHandle: ...


# Words that are the shell's own: `exec exit 3` would fail where `exit 3` works.
SHELL_WORDS = frozenset(
    [
        ".",
        ":",
        "[",
        "alias",
        "bg",
        "break",
        "cd",
        "command",
        "continue",
        "eval",
        "exec",
        "exit",
        "export",
        "false",
        "fc",
        "fg",
        "getopts",
        "hash",
        "jobs",
        "kill",
        "local",
        "printf",
        "pwd",
        "read",
        "readonly",
        "return",
        "set",
        "shift",
        "source",
        "test",
        "times",
        "trap",
        "true",
        "type",
        "ulimit",
        "umask",
        "unalias",
        "unset",
        "wait",
        "if",
        "then",
        "else",
        "elif",
        "fi",
        "for",
        "while",
        "until",
        "do",
        "done",
        "case",
        "esac",
        "!",
        "{",
        "}",
    ]
)


def shell_argv(command: str) -> list[str]:
    """argv that runs command through sh; a simple command replaces the shell (exec),
    so the task itself gets `datmo stop`'s SIGTERM and can finish cleanly."""
    words = command.split()
    # `A=1 cmd` sets a variable for cmd: the shell must see it, so no exec then.
    simple = bool(words) and words[0] not in SHELL_WORDS and "=" not in words[0]
    simple = simple and not any(c in command for c in ";&|<>()$`\n*?[]{}~#")
    return ["/bin/sh", "-c", f"exec {command}" if simple else command]


def get(name: str) -> Executor:
    if name == "docker":
        from datmo.core.executor.docker import DockerExecutor

        return DockerExecutor()
    if name == "local":
        from datmo.core.executor.local import LocalExecutor

        return LocalExecutor()
    if name == "slurm":  # on the compute node, inside the job (see executor/slurm.py)
        from datmo.core.executor.slurm import SlurmExecutor

        return SlurmExecutor()
    raise UsageError(f"unknown executor '{name}'; use one of: {', '.join(EXECUTORS)}")
