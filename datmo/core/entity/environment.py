"""The environment record: `.datmo/environments/<id>.json`.

An environment is a definition, a Dockerfile and the files it copies, kept in
the object store (`files` maps each name to its object's digest). The id is a
hash of those files and the build args, so it names the content exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from datmo.core.entity.base import check_schema, check_types, require
from datmo.errors import CorruptStore

# 1: written by the first register(): no description or build_args, source "builtin".
SCHEMA_VERSION = 2
BUILTIN_PREFIX = "builtin:"


@dataclass(frozen=True)
class Environment:
    """An environment definition: a Dockerfile and its files, identified by content."""

    id: str
    name: str
    source: str  # "builtin:<template>", "project" (the root Dockerfile) or "user" (--paths)
    files: dict[str, str]
    created_at: str
    description: str = ""
    build_args: dict[str, str] = field(default_factory=dict)
    deleted_at: str | None = None  # deleted while snapshots or runs used it: kept for them
    schema_version: int = SCHEMA_VERSION

    @property
    def builtin(self) -> str | None:
        """The built-in template's name, for built-in environments."""
        return self.source.removeprefix(BUILTIN_PREFIX) if self.is_builtin else None

    @property
    def is_builtin(self) -> bool:
        return self.source.startswith(BUILTIN_PREFIX)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Environment:
        version = check_schema("environment", doc, SCHEMA_VERSION)
        require("environment", doc, "id", "files", "created_at")
        known = set(cls.__dataclass_fields__)
        kwargs = {k: v for k, v in doc.items() if k in known}
        check_types("environment", cls, kwargs)
        if not all(isinstance(v, str) for v in kwargs["files"].values()):
            raise CorruptStore(f"environment {doc.get('id', '?')} has a bad 'files' entry")
        kwargs.setdefault("name", "")
        kwargs.setdefault("source", "user")
        if version < 2 and kwargs["source"] == "builtin":
            kwargs["source"] = BUILTIN_PREFIX + kwargs["name"]
        kwargs["description"] = kwargs.get("description") or ""
        kwargs["build_args"] = dict(kwargs.get("build_args") or {})
        kwargs["files"] = dict(kwargs["files"])
        kwargs["schema_version"] = SCHEMA_VERSION
        check_types("environment", cls, kwargs)
        return cls(**kwargs)

    def evolve(self, **changes: Any) -> Environment:
        return replace(self, **changes)
