"""Typed config and metrics from KEY=VALUE options and JSON/YAML files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from datmo.errors import NotFound, UsageError


def parse_value(text: str) -> Any:
    """'0.01' -> 0.01, '3' -> 3, 'true' -> True, '[1,2]' -> [1, 2], 'resnet' -> 'resnet'."""
    s = text.strip()
    if s in ("true", "True"):
        return True
    if s in ("false", "False"):
        return False
    if s in ("null", "None"):
        return None
    try:
        value = json.loads(s)
    except (ValueError, RecursionError):
        return text
    if isinstance(value, float) and not math.isfinite(value):
        return text  # NaN/Infinity are not valid JSON on disk; keep the user's text
    return value


def parse_pairs(items: tuple[str, ...] | list[str], option: str) -> dict[str, Any]:
    """Parse repeatable KEY=VALUE (or KEY:VALUE) options, keeping value types."""
    return {k: parse_value(v) for k, v in split_pairs(items, option).items()}


def split_pairs(items: tuple[str, ...] | list[str], option: str) -> dict[str, str]:
    """KEY=VALUE (or KEY:VALUE) options as the text of each value, the last one winning."""
    out: dict[str, str] = {}
    for item in items:
        eq, colon = item.find("="), item.find(":")
        cuts = [i for i in (eq, colon) if i > 0]
        if not cuts:
            raise UsageError(
                f"{option} expects KEY=VALUE, got '{item}'; for example {option} lr=0.01"
            )
        cut = min(cuts)
        key = item[:cut].strip()
        if not key:
            raise UsageError(f"{option} '{item}' has an empty key; use KEY=VALUE")
        out[key] = item[cut + 1 :]
    return out


def load_mapping(path: Path, option: str) -> dict[str, Any]:
    """A JSON or YAML file holding one mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFound(f"{option}: no such file '{path}'") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{option}: cannot read '{path}': {e.__class__.__name__}") from None
    doc: Any
    try:
        doc = json.loads(text)
    except ValueError:
        import yaml  # only for files that are not JSON

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise UsageError(f"{option}: '{path}' is neither valid JSON nor YAML{where}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise UsageError(f"{option}: '{path}' must hold a mapping of keys to values")
    return {str(k): v for k, v in doc.items()}


MAX_DEPTH = 64


def text(value: str, what: str) -> str:
    """Text that can be stored: valid Unicode (no lone surrogates from odd bytes)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{what} is not valid UTF-8 text; retype it") from None
    return value


def normalize(value: Any, where: str, depth: int = 0) -> Any:
    """Make values storable as strict JSON: dates as ISO text, NaN/inf as text, sets as lists."""
    import datetime

    if depth > MAX_DEPTH:
        raise UsageError(f"{where} nests deeper than {MAX_DEPTH} levels (or refers to itself)")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return text(value, where)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        return {
            text(str(k), f"a key in {where}"): normalize(v, f"{where}.{k}", depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [normalize(v, where, depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((normalize(v, where, depth + 1) for v in value), key=repr)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return normalize(value.item(), where, depth + 1)
    raise UsageError(
        f"{where} is a {type(value).__name__}, which cannot be stored; use numbers, text, "
        "lists or mappings"
    )


def gather(
    pairs: tuple[str, ...] | list[str],
    file: str | None,
    default_file: Path | None,
    option: str,
) -> dict[str, Any]:
    """Merge, lowest priority first: the project's default file, --*-file, then KEY=VALUE."""
    out: dict[str, Any] = {}
    if default_file is not None and default_file.is_file():
        out.update(load_mapping(default_file, default_file.name))
    if file:
        out.update(load_mapping(Path(file), f"{option}-file"))
    out.update(parse_pairs(pairs, option))
    return {k: normalize(v, f"{option} {k}") for k, v in out.items()}
