"""Shared helpers for entity records: timestamps and schema checks."""

from __future__ import annotations

import functools
import os
from datetime import datetime, timezone
from typing import Any

from datmo.errors import CorruptStore


def new_id() -> str:
    """A 40-hex-character id (os.urandom: `secrets` costs start-up time for the same bytes)."""
    return os.urandom(20).hex()


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


_RUNTIME = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "dict": (dict,),
    "list": (list,),
    "None": (type(None),),
    "Any": (object,),
}


@functools.cache
def _allowed(cls: Any) -> dict[str, tuple[type, ...]]:
    out: dict[str, tuple[type, ...]] = {}
    for name, f in cls.__dataclass_fields__.items():
        allowed: tuple[type, ...] = ()
        for part in str(f.type).split("|"):
            allowed += _RUNTIME.get(part.strip().split("[", 1)[0], (object,))
        out[name] = allowed
    return out


def check_types(kind: str, cls: Any, values: dict[str, Any]) -> None:
    """Refuse a record whose fields have the wrong JSON types, naming the field.

    Annotations are strings here (postponed evaluation); their outer types are enough
    to keep a hand-edited or damaged record from crashing a command later.
    """
    for name, allowed in _allowed(cls).items():
        if name not in values:
            continue
        if not isinstance(values[name], allowed):
            raise CorruptStore(
                f"{kind} {values.get('id', '?')} has a bad '{name}' "
                f"({type(values[name]).__name__}); run 'datmo fsck --repair'"
            )
