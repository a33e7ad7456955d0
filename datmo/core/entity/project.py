"""The project record: `.datmo/project.json`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from datmo.core.entity.base import check_schema, check_types, require

SCHEMA_VERSION = 1
DEFAULT_FILE_THRESHOLD = 1 << 20  # bytes; larger files go to the object store, not git


@dataclass(frozen=True)
class Project:
    """The project record (.datmo/project.json)."""

    id: str
    name: str
    description: str
    created_at: str
    updated_at: str
    file_threshold: int = DEFAULT_FILE_THRESHOLD
    active_environment_id: str | None = None
    default_executor: str = "local"
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # `datmo settings`; never config
    # `datmo remote add`: name -> {"url": ..., "endpoint_url": ...}; never a credential
    remotes: dict[str, Any] = field(default_factory=dict)
    default_remote: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Project:
        check_schema("project", doc, SCHEMA_VERSION)
        require("project", doc, "id", "name", "created_at")
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in doc.items() if k in known}
        kwargs.setdefault("description", "")
        kwargs.setdefault("updated_at", doc["created_at"])
        kwargs["schema_version"] = SCHEMA_VERSION
        check_types("project", cls, kwargs)
        return cls(**kwargs)

    def evolve(self, **changes: Any) -> Project:
        return replace(self, **changes)
