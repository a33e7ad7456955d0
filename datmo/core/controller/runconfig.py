"""A run's config: what its record holds is exactly what its task sees.

The config is the project's config file (config.json, or the one --config-file names)
with the `-c` values over it, typed. The task gets it four ways: $DATMO_CONFIG (the
JSON, when it is small enough for one variable) and $DATMO_CONFIG_FILE, datmo.config()
in the task SDK, placeholders in the command (`--lr {lr}`), and the config file itself,
rewritten with the `-c` values before the before snapshot (so the snapshot holds the
very file the task reads) and left so in the working tree, as DVC's --set-param does.
A project with no config file gets none written.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datmo.core.storage.fsutil import Owner
from datmo.core.task import command as placeholders
from datmo.core.task.spec import RunSpec
from datmo.core.tree import configfile
from datmo.core.util import params
from datmo.errors import UsageError


@dataclass
class RunConfig:
    """The merged config and what follows from it, worked out before anything is made."""

    values: dict[str, Any]
    command: str  # with its placeholders filled in
    file: Path | None = None  # the config file in the tree the task runs in
    changes: dict[str, Any] = field(default_factory=dict)  # what -c changes in that file
    file_values: dict[str, Any] = field(default_factory=dict)

    def note(self, root: Path) -> str | None:
        """The one line `datmo run` says when it rewrote the config file."""
        if not (self.file and self.changes):
            return None
        shown = " ".join(
            "-c " + shlex.quote(f"{k}={placeholders.value_text(v)}")
            for k, v in self.changes.items()
        )
        name = os.path.relpath(self.file, root)
        return f"{name}: wrote {shown} into it for this run (it stays so in your working tree)"


def prepare(spec: RunSpec, tree: Path, cwd: Path, again: bool = False) -> RunConfig:
    """Merge, type and check the config; fill in the command. Writes nothing.

    tree: the folder the task runs in (the project, or a run's own copy of it);
    cwd: where a relative --config-file is found; again: a rerun, whose spec holds the
    config and command of the original as they were given (files and placeholders were
    read and filled in then).
    """
    if again:
        return RunConfig(dict(spec.config), spec.command)
    file = _config_file(spec, tree, cwd)
    current = params.load_mapping(file, file.name) if file else {}
    current = {
        k: params.normalize(v, f"{file.name if file else ''} {k}") for k, v in current.items()
    }
    given = {k: params.normalize(v, f"-c {k}") for k, v in spec.config.items()}
    values = {**current, **given}
    command = placeholders.expand(spec.command, values, spec.config_text)
    changes = configfile.changed(current, given) if file else {}
    if changes and file:
        configfile.check_writable(file, tree)
    return RunConfig(values, command, file, changes, current)


def _config_file(spec: RunSpec, tree: Path, cwd: Path) -> Path | None:
    if spec.config_file:
        path = Path(os.path.expanduser(spec.config_file))
        path = path if path.is_absolute() else cwd / path
        if not path.is_file():
            raise UsageError(f"--config-file: no such file '{spec.config_file}'")
        return path
    default = tree / configfile.NAME
    return default if default.is_file() and not default.is_symlink() else None


def write_file(rc: RunConfig, owner: Owner | None) -> None:
    """Put the -c values into the config file, before the before snapshot."""
    if rc.file and rc.changes:
        configfile.rewrite(rc.file, rc.file_values, rc.changes, owner)
