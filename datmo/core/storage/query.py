"""`datmo ls --filter/--sort`: a small expression language compiled to SQL.

    lr=0.01            acc>=0.9 and lr<0.1        status=FAILED or loss>2
    config.layers>2    metrics.acc>0.8            command=python train.py

A bare key looks in metrics first, then config. `and` binds tighter than `or`.
Values are typed as in `-c KEY=VALUE`.
"""

from __future__ import annotations

import re
from typing import Any

from datmo.core.util.params import parse_value
from datmo.errors import UsageError

FIELDS = {"id", "status", "type", "command", "environment_id", "exit_code", "created_at"}
_COND = re.compile(r"^\s*([A-Za-z_][\w.\-/]*)\s*(==|!=|<=|>=|=|<|>)\s*(.*?)\s*$")
_CONNECTIVE = re.compile(r"(?:^|\s+)(and|or)(?=\s|$)\s*", re.IGNORECASE)


def _section(key: str) -> tuple[str, str]:
    """(section of run_values, key): config.X, metrics.X, or a bare key (metric first)."""
    for prefix, sec in (("config.", "c"), ("metrics.", "m")):
        if key.startswith(prefix):
            return sec, key[len(prefix) :]
    return "b", key


def _value(key: str) -> tuple[str, list[Any]]:
    """SQL for one run's value of a config/metric key (for sorting)."""
    sec, name = _section(key)
    sql = "(SELECT val FROM run_values WHERE rid = runs.rid AND sec = ? AND key = ?)"
    return sql, [sec, name]


# One condition: (keep or drop, a query of the rids it selects, its parameters).
Cond = tuple[bool, str, list[Any]]


def _matching(test: str) -> str:
    """Runs whose value of a key passes test: a search of the (sec, key, val) index."""
    return f"SELECT rid FROM run_values WHERE sec = ? AND key = ? AND val {test}"


def _condition(text: str) -> Cond:
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
    if isinstance(value, (dict, list)) or (value is None and op not in ("=", "!=")):
        raise UsageError(f"filter '{text.strip()}': compare with a number or a word")
    if isinstance(value, bool):
        value = int(value)  # the index keeps JSON true/false as 1/0
    if key in FIELDS:
        if value is None:
            return (
                True,
                f"SELECT rid FROM runs WHERE {key} IS {'NOT ' if op == '!=' else ''}NULL",
                [],
            )
        return True, f"SELECT rid FROM runs WHERE {key} {op} ?", [value]
    sec, name = _section(key)
    if value is None:  # key=null: the key is missing or null; key!=null: it has a value
        return op == "!=", _matching("IS NOT NULL"), [sec, name]
    return True, _matching(f"{op} ?"), [sec, name, value]


def _group(conds: list[Cond]) -> tuple[str, list[Any]]:
    """Conditions joined by 'and', as set operations on rids: SQLite evaluates them
    left to right, so the kept sets are intersected first and the dropped ones taken out."""
    keep = [c for c in conds if c[0]] or [(True, "SELECT rid FROM runs", [])]
    drop = [c for c in conds if not c[0]]
    sql = " INTERSECT ".join(q for _, q, _ in keep)
    sql += "".join(f" EXCEPT {q}" for _, q, _ in drop)
    return f"rid IN ({sql})", [p for _, _, ps in keep + drop for p in ps]


def compile_filter(expr: str | None) -> tuple[str, list[Any]]:
    """Turn a filter expression into (SQL WHERE clause, parameters)."""
    if not expr or not expr.strip():
        return "", []
    # [cond, op, cond, op, cond]: an empty cond means a dangling or doubled and/or.
    parts = _CONNECTIVE.split(expr.strip())
    groups: list[list[Cond]] = [[]]
    for i, part in enumerate(parts):
        if i % 2:
            if part.lower() == "or":
                groups.append([])
            continue
        if not part.strip():
            raise UsageError(
                f"the filter '{expr.strip()}' has an 'and'/'or' with nothing on one side"
            )
        groups[-1].append(_condition(part))
    compiled = [_group(g) for g in groups]
    return " OR ".join(sql for sql, _ in compiled), [p for _, ps in compiled for p in ps]


def compile_sort(spec: str | None) -> tuple[str, list[Any]]:
    """--sort KEY[:asc|:desc] (default descending, missing values last)."""
    if not spec:
        return "created_at DESC", []
    key, _, direction = spec.partition(":")
    direction = (direction or "desc").lower()
    if direction not in ("asc", "desc") or not key.strip():
        raise UsageError(f"--sort expects KEY or KEY:asc or KEY:desc, got '{spec}'")
    key = key.strip()
    sql, params = (key, []) if key in FIELDS else _value(key)
    return f"{sql} IS NULL, {sql} {direction.upper()}", params + params
