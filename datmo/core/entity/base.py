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


# The exact types a JSON value of each annotation may have (bool counts as an int, as
# isinstance would have it); checked by type() and set membership, cheaper than isinstance.
_RUNTIME: dict[str, frozenset[type]] = {
    "str": frozenset({str}),
    "int": frozenset({int, bool}),
    "float": frozenset({int, float, bool}),
    "bool": frozenset({bool}),
    "dict": frozenset({dict}),
    "list": frozenset({list}),
    "None": frozenset({type(None)}),
}


@functools.cache
def _allowed(cls: Any) -> dict[str, frozenset[type] | None]:
    """Field name -> the types its JSON value may have (None: anything)."""
    out: dict[str, frozenset[type] | None] = {}
    for name, f in cls.__dataclass_fields__.items():
        allowed: frozenset[type] = frozenset()
        for part in str(f.type).split("|"):
            kinds = _RUNTIME.get(part.strip().split("[", 1)[0])
            if kinds is None:  # Any, or a type JSON cannot hold: not checked
                out[name] = None
                break
            allowed |= kinds
        else:
            out[name] = allowed
    return out


def check_types(kind: str, cls: Any, values: dict[str, Any]) -> None:
    """Refuse a record whose fields have the wrong JSON types, naming the field.

    Annotations are strings here (postponed evaluation); their outer types are enough
    to keep a hand-edited or damaged record from crashing a command later.
    """
    allowed = _allowed(cls)
    for name, value in values.items():
        kinds = allowed.get(name)
        if kinds is not None and type(value) not in kinds:
            raise CorruptStore(
                f"{kind} {values.get('id', '?')} has a bad '{name}' "
                f"({type(value).__name__}); run 'datmo fsck --repair'"
            )


# Per record class, the value-type signatures (field by field) that passed check_types:
# rows of one project share a handful, so most rows are checked by one set lookup.
_GOOD_ROWS: dict[Any, set[tuple[type, ...]]] = {}


def check_row(kind: str, cls: Any, fields: tuple[str, ...], values: list[Any]) -> None:
    """check_types for a record given as values in `fields` order."""
    signature = tuple(map(type, values))
    good = _GOOD_ROWS.setdefault(cls, set())
    if signature in good:
        return
    check_types(kind, cls, dict(zip(fields, values, strict=True)))
    if len(good) < 4096:
        good.add(signature)


@functools.cache
def field_defaults(cls: Any) -> tuple[dict[str, Any], tuple[tuple[str, Any], ...]]:
    import dataclasses

    plain = {
        n: f.default
        for n, f in cls.__dataclass_fields__.items()
        if f.default is not dataclasses.MISSING
    }
    factories = tuple(
        (n, f.default_factory)
        for n, f in cls.__dataclass_fields__.items()
        if f.default_factory is not dataclasses.MISSING
    )
    return plain, factories


def build(cls: Any, values: dict[str, Any]) -> Any:
    """cls(**values) for a checked record, without the frozen dataclass's __init__.

    That __init__ sets each of a run's ~30 fields through object.__setattr__, which is
    two thirds of reading a record; listing thousands of runs reads thousands of them.
    values must hold every field without a default (`require` checks them).
    """
    obj = object.__new__(cls)
    state = obj.__dict__
    if len(values) < len(cls.__dataclass_fields__):
        plain, factories = field_defaults(cls)
        state.update(plain)
        for name, factory in factories:
            if name not in values:
                state[name] = factory()
    state.update(values)
    return obj
