"""The snapshot record: `.datmo/snapshots/<id>.json`.

Code is a tree in the shadow git repo (code_id, with a commit code_commit);
files are a manifest object in the object store (files_id); the environment is
a definition id plus a generated requirements.txt object. Platform facts are
recorded for people, never compared.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from datmo.core.entity.base import check_schema, check_types, require

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Snapshot:
    """One point of reference: code, environment, files, config and metrics."""

    id: str
    created_at: str
    message: str
    code_id: str
    code_commit: str
    files_id: str
    environment_id: str | None
    requirements_id: str | None = None
    label: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    platform: dict[str, Any] = field(default_factory=dict)
    hidden: bool = False
    parent_id: str | None = None
    run_id: str | None = None
    file_count: int = 0
    code_count: int = 0
    total_bytes: int = 0
    skipped: list[list[str]] = field(default_factory=list)
    made_by: str | None = None  # "run" (a run's before or after), "checkout" (saved work)
    deleted_at: str | None = None  # deleted while runs used it: kept, hidden, until they go
    tags: list[str] = field(default_factory=list)
    origin: str | None = None  # pulled: the remote (or bundle) it came from; never pushed
    files_pending: bool = False  # pulled with --no-files: its files are fetched on first use
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Snapshot:
        check_schema("snapshot", doc, SCHEMA_VERSION)
        require("snapshot", doc, "id", "created_at", "code_id", "code_commit", "files_id")
        known = set(cls.__dataclass_fields__)
        kwargs = {k: v for k, v in doc.items() if k in known}
        kwargs.setdefault("message", "")
        kwargs.setdefault("environment_id", None)
        kwargs["schema_version"] = SCHEMA_VERSION
        check_types("snapshot", cls, kwargs)
        return cls(**kwargs)

    def evolve(self, **changes: Any) -> Snapshot:
        return replace(self, **changes)

    @property
    def run_made(self) -> bool:
        """A run's before or after snapshot (older records say so by their message)."""
        if self.made_by is not None:
            return self.made_by == "run"
        return self.hidden and (bool(self.run_id) or self.message.startswith("before run:"))

    def same_state(self, other: Snapshot) -> bool:
        """True when both record the same code, files, environment, config and metrics."""
        keys = ("code_id", "files_id", "environment_id", "requirements_id", "config", "metrics")
        return all(getattr(self, k) == getattr(other, k) for k in keys)

    def same_content(self, other: Snapshot) -> bool:
        """Same state and the same words (used to skip duplicates)."""
        words = (self.message, self.label, self.tags)
        return self.same_state(other) and words == (other.message, other.label, other.tags)
