"""`datmo ls --filter/--sort`: a small expression language compiled to SQL.

    lr=0.01            acc>=0.9 and lr<0.1        status=FAILED or loss>2
    config.layers>2    metrics.acc>0.8            command=python train.py

A bare key looks in metrics first, then config. `and` binds tighter than `or`.
Values are typed as in `-c KEY=VALUE`.
"""

from __future__ import annotations

import re
from typing import Any

from datmo.core.params import parse_value
from datmo.errors import UsageError

FIELDS = {"id", "status", "type", "command", "environment_id", "exit_code", "created_at"}
_COND = re.compile(r"^\s*([A-Za-z_][\w.\-/]*)\s*(==|!=|<=|>=|=|<|>)\s*(.*?)\s*$")
_CONNECTIVE = re.compile(r"(?:^|\s+)(and|or)(?=\s|$)\s*", re.IGNORECASE)


def _json_path(key: str) -> str:
    return '$."' + key.replace('"', '""') + '"'


def _operand(key: str) -> tuple[str, list[Any]]:
    if key in FIELDS:
        return key, []
    for prefix, column in (("config.", "config"), ("metrics.", "metrics")):
        if key.startswith(prefix):
            return f"json_extract({column}, ?)", [_json_path(key[len(prefix) :])]
    return "coalesce(json_extract(metrics, ?), json_extract(config, ?))", [
        _json_path(key),
        _json_path(key),
    ]


def _condition(text: str) -> tuple[str, list[Any]]:
    m = _COND.match(text)
    if not m:
        raise UsageError(
            f"cannot read the filter '{text.strip()}'; write KEY OP VALUE with OP one of "
            "= != < <= > >=, joined by 'and'/'or' (for example: acc>0.9 and lr=0.01)"
        )
    key, op, raw = m.groups()
    if op == "==":
        op = "="
    value = parse_value(raw)
    sql, params = _operand(key)
    if isinstance(value, (dict, list)) or (value is None and op not in ("=", "!=")):
        raise UsageError(f"filter '{text.strip()}': compare with a number or a word")
    if value is None:
        return f"{sql} IS {'NOT ' if op == '!=' else ''}NULL", params
    if isinstance(value, bool):
        value = int(value)  # JSON true/false come back from json_extract as 1/0
    return f"{sql} {op} ?", [*params, value]


def compile_filter(expr: str | None) -> tuple[str, list[Any]]:
    """Turn a filter expression into (SQL WHERE clause, parameters)."""
    if not expr or not expr.strip():
        return "", []
    # [cond, op, cond, op, cond]: an empty cond means a dangling or doubled and/or.
    parts = _CONNECTIVE.split(expr.strip())
    groups: list[list[str]] = [[]]
    params: list[Any] = []
    for i, part in enumerate(parts):
        if i % 2:
            if part.lower() == "or":
                groups.append([])
            continue
        if not part.strip():
            raise UsageError(
                f"the filter '{expr.strip()}' has an 'and'/'or' with nothing on one side"
            )
        sql, p = _condition(part)
        groups[-1].append(sql)
        params += p
    return " OR ".join("(" + " AND ".join(g) + ")" for g in groups), params


def compile_sort(spec: str | None) -> tuple[str, list[Any]]:
    """--sort KEY[:asc|:desc] (default descending, missing values last)."""
    if not spec:
        return "created_at DESC", []
    key, _, direction = spec.partition(":")
    direction = (direction or "desc").lower()
    if direction not in ("asc", "desc") or not key.strip():
        raise UsageError(f"--sort expects KEY or KEY:asc or KEY:desc, got '{spec}'")
    sql, params = _operand(key.strip())
    return f"({sql}) IS NULL, {sql} {direction.upper()}", params + params
