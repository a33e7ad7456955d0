"""Finding a project: the object every controller is handed (root, store, record)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from datmo.core.entity.project import Project
from datmo.core.storage.store import Store
from datmo.core.util import probe
from datmo.errors import ProjectNotFound

JOURNAL = ("journal", "checkout.json")  # in .datmo: a checkout not yet finished


def find_root(start: Path | None = None) -> Path:
    """Walk up from start (default: cwd) to the folder holding `.datmo`, as git does."""
    here = os.path.abspath(start or os.getcwd())
    found = probe.find_root(here)
    if found is None:
        raise ProjectNotFound(here)
    return Path(found)


@dataclass
class ProjectContext:
    """A project's root, its store and its record, as passed to controllers."""

    root: Path
    store: Store

    @property
    def info(self) -> Project:
        return Project.from_dict(self.store.read_json("project.json"))

    def save_info(self, project: Project) -> None:
        self.store.write_json("project.json", project.to_dict())


def find_project(start: Path | None = None) -> ProjectContext:
    """The project holding start (default: cwd), as it is on disk. Commands open it
    through datmo.core.controller.project.open_project, which first finishes a checkout
    that was interrupted."""
    root = find_root(start)
    return ProjectContext(root, Store(root))
