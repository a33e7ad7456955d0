"""Shared helpers for entity records: timestamps and schema checks."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from datmo.errors import CorruptStore


def utcnow() -> str:
    """ISO-8601 UTC timestamp with microseconds, sortable as text."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def check_schema(kind: str, doc: dict[str, Any], current: int) -> int:
    version = doc.get("schema_version", 1)
    if not isinstance(version, int) or version > current:
        raise CorruptStore(
            f"{kind} {doc.get('id', '?')} has schema version {version!r}, newer than this datmo "
            f"understands ({current}); upgrade datmo"
        )
    return version


def require(kind: str, doc: dict[str, Any], *keys: str) -> None:
    missing = [k for k in keys if k not in doc]
    if missing:
        raise CorruptStore(
            f"{kind} {doc.get('id', '?')} lacks {', '.join(missing)}; run 'datmo fsck --repair'"
        )
