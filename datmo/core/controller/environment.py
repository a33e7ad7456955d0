"""Environments: the definition (Dockerfile and its files) that code runs in.

A definition's id is a hash of its files with line endings normalised, so the
same Dockerfile gives the same id on any machine. The files are kept in the
object store so any snapshot's environment can be rebuilt later.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from datmo.core.entity.base import utcnow
from datmo.core.project import ProjectContext
from datmo.errors import NotFound

KIND = "environments"
DEFAULT_TEMPLATE = "python"


def template_files(name: str) -> dict[str, bytes]:
    folder = resources.files("datmo.templates").joinpath(name)
    if not folder.is_dir():
        raise NotFound(f"no built-in environment '{name}'")
    return {f.name: f.read_bytes() for f in folder.iterdir() if f.is_file()}


def register(ctx: ProjectContext, name: str, files: dict[str, bytes], source: str) -> str:
    """Store a definition (idempotent) and return its id."""
    from datmo.core.envinfo import definition_id

    env_id = definition_id(files)
    store = ctx.store
    if env_id in store.list_ids(KIND):
        return env_id
    doc: dict[str, Any] = {
        "id": env_id,
        "name": name,
        "source": source,
        "files": {n: store.objects.put_bytes(data) for n, data in sorted(files.items())},
        "created_at": utcnow(),
        "schema_version": 1,
    }
    with store.lock():
        store.write_entity(KIND, doc)
    return env_id


def in_use(ctx: ProjectContext) -> str:
    """The environment a snapshot taken now records.

    The active one if set; else a Dockerfile in the project root; else the
    built-in CPU Python definition that a run would use.
    """
    active = ctx.info.active_environment_id
    if active:
        return active
    dockerfile = ctx.root / "Dockerfile"
    if dockerfile.is_file():
        return register(ctx, "Dockerfile", {"Dockerfile": dockerfile.read_bytes()}, "project")
    return register(ctx, DEFAULT_TEMPLATE, template_files(DEFAULT_TEMPLATE), "builtin")
