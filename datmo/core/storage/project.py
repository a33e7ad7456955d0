"""Finding a project: the object every controller is handed (root, store, record)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datmo.core.entity.project import Project
from datmo.core.storage.store import Store
from datmo.core.util import probe
from datmo.errors import CorruptStore, ProjectNotFound

JOURNAL = ("journal", "checkout.json")  # in .datmo: a checkout not yet finished
RECORD = "project.json"
BACKUP = "project.backup.json"  # a second copy: the id and settings survive a damaged record


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
        return parse(self.store.read_json(RECORD))

    def save_info(self, project: Project) -> None:
        doc = project.to_dict()
        self.store.write_json(RECORD, doc)
        self.store.write_json(BACKUP, doc)

    def recovered_info(self) -> tuple[Project, bool]:
        """The project record from its backup when the record itself cannot be read, or a
        new one (True: made anew, with a new id, since no backup could be read either).
        Nothing is written: the caller saves it."""
        from datmo.core.entity.base import new_id, utcnow
        from datmo.errors import DatmoError

        try:
            return parse(self.store.read_json(BACKUP)), False
        except DatmoError:
            now = utcnow()
            name = self.root.name or "project"
            return Project(
                id=new_id(), name=name, description="", created_at=now, updated_at=now
            ), True


def parse(doc: Any) -> Project:
    """A project record from its JSON; CorruptStore for anything else."""
    if not isinstance(doc, dict):
        raise CorruptStore(f"{RECORD} does not hold a project record; run 'datmo fsck --repair'")
    return Project.from_dict(doc)


def find_project(start: Path | None = None) -> ProjectContext:
    """The project holding start (default: cwd), as it is on disk. Commands open it
    through datmo.core.controller.project.open_project, which first finishes a checkout
    that was interrupted."""
    root = find_root(start)
    return ProjectContext(root, Store(root))
