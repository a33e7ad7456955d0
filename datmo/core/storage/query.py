"""`datmo ls --filter/--sort`: a small expression language compiled to SQL.

    lr=0.01            acc>=0.9 and lr<0.1        status=FAILED or loss>2
    config.seed=1      metrics.seed>3             val_loss.min<0.3
    tag=baseline       message=big steps          duration_s>60

A bare key means the config key or the metric of that name; one that is both is refused
(write config.KEY or metrics.KEY). KEY.min and KEY.max are a metric's series' extremes.
`and` binds tighter than `or`. Values are typed as in `-c KEY=VALUE`; <, <=, > and >=
compare numbers (and the text of the record's own fields, such as created_at).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from datmo.core.util.params import parse_value
from datmo.errors import UsageError

FIELDS = {
    "id",
    "status",
    "type",
    "command",
    "environment_id",
    "exit_code",
    "created_at",
    "message",
    "duration_s",
    "sweep_id",
}
TEXT_FIELDS = {
    "id",
    "status",
    "type",
    "command",
    "environment_id",
    "created_at",
    "message",
    "sweep_id",
}
_COND = re.compile(r"^\s*([A-Za-z_][\w.\-/]*)\s*(==|!=|<=|>=|=|<|>)\s*(.*?)\s*$")
_CONNECTIVE = re.compile(r"(?:^|\s+)(and|or)(?=\s|$)\s*", re.IGNORECASE)
_EXAMPLE = "for example: acc>0.9 and lr=0.01"

# What the index knows of a key: the sections ('c' config, 'm' metrics) that have it.
Sections = Callable[[str], set[str]]


@dataclass
class Compiled:
    """SQL for a filter or a sort, and what the user should hear about it."""

    sql: str = ""
    params: list[Any] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # keys no run has
    # The same filter tested run by run (EXISTS probes of the primary key): read in the
    # listing's own order, a page of dense matches is found without visiting the rest.
    scan: str = ""


def _key(key: str, sections: Sections, unknown: list[str]) -> tuple[str, str]:
    """(section, key in it) for a key as typed."""
    for prefix, sec in (("config.", "c"), ("metrics.", "m")):
        if key.startswith(prefix):
            name = key[len(prefix) :]
            if sec not in sections(name):
                unknown.append(key)
            return sec, name
    found = sections(key)
    if found == {"c", "m"}:
        raise UsageError(
            f"'{key}' is both a config key and a metric; write config.{key} or metrics.{key}"
        )
    if not found:
        unknown.append(key)
        return "m", key
    return found.pop(), key


def _matching(test: str) -> str:
    """Runs whose value of a key passes test: a search of the (sec, key, val) index."""
    return f"SELECT rid FROM run_values WHERE sec = ? AND key = ? AND val {test}"


# One condition: (keep or drop, a query of the rids it selects, its parameters).
Cond = tuple[bool, str, list[Any]]


def _value_of(text: str, raw: str, op: str) -> Any:
    """The value of one condition, refused where it cannot be what was meant."""
    where = f"filter '{text.strip()}'"
    if not raw:
        raise UsageError(f"{where} has no value after '{op}'; {_EXAMPLE}")
    if raw[0] in "=<>!":
        better = {"=>": ">=", "=<": "<=", ">>": ">", "<<": "<", "=!": "!="}.get(op + raw[0])
        hint = f"did you mean '{better}'?" if better else "use one of = != < <= > >="
        raise UsageError(f"{where}: '{op}{raw[0]}' is not an operator; {hint}")
    if "&&" in raw or "||" in raw:
        raise UsageError(f"{where}: join conditions with 'and' and 'or', not && and ||")
    if re.search(r"[,;]\s*[A-Za-z_][\w.\-/]*\s*(==|!=|<=|>=|=|<|>)", raw):
        raise UsageError(f"{where}: join conditions with 'and' or 'or', not commas; {_EXAMPLE}")
    if re.search(r"\s(==|!=|<=|>=|=|<|>)\s*\S", f" {raw}"):
        raise UsageError(f"{where}: one condition holds two operators; {_EXAMPLE}")
    value = parse_value(raw)
    if isinstance(value, (dict, list)):
        raise UsageError(f"{where}: compare with a number or a word, not a list or mapping")
    if value is None and op not in ("=", "!="):
        raise UsageError(f"{where}: null can only be compared with = or !=")
    return int(value) if isinstance(value, bool) else value  # the index keeps true as 1


def _condition(text: str, sections: Sections, unknown: list[str]) -> Cond:
    m = _COND.match(text)
    if not m:
        raise UsageError(
            f"cannot read the filter '{text.strip()}'; write KEY OP VALUE with OP one of "
            f"= != < <= > >=, joined by 'and'/'or' ({_EXAMPLE})"
        )
    key, op, raw = m.groups()
    op = "=" if op == "==" else op
    value = _value_of(text, raw, op)
    ordered = op not in ("=", "!=")
    if key == "tag":
        if ordered or value is None:
            raise UsageError(f"filter '{text.strip()}': tags take = or != and a name")
        query = "SELECT rid FROM run_values WHERE sec = 't' AND key = ?"
        return op == "=", query, [str(value)]
    if ordered and isinstance(value, str) and key not in TEXT_FIELDS:
        raise UsageError(
            f"filter '{text.strip()}': '{op}' compares numbers, and '{value}' is not one "
            "(words take = or !=)"
        )
    if key in FIELDS:
        if value is None:
            nullness = "IS NOT NULL" if op == "!=" else "IS NULL"
            return True, f"SELECT rid FROM runs WHERE {key} {nullness}", []
        return True, f"SELECT rid FROM runs WHERE {key} {op} ?", [value]
    sec, name = _key(key, sections, unknown)
    if value is None:  # key=null: the key is missing or null; key!=null: it has a value
        return op == "!=", _matching("IS NOT NULL"), [sec, name]
    return True, _matching(f"{op} ?"), [sec, name, value]


_SELECT = re.compile(r"^SELECT rid FROM (\w+)(?: WHERE (.*))?$", re.S)


def _probe(keep: bool, query: str) -> str:
    """One condition as a test of the run in hand (the outer query's `runs` row)."""
    m = _SELECT.match(query)
    assert m, query
    table, cond = m.groups()
    where = f"t.rid = runs.rid AND ({cond})" if cond else "t.rid = runs.rid"
    return f"{'' if keep else 'NOT '}EXISTS (SELECT 1 FROM {table} AS t WHERE {where})"


def _scan(conds: list[Cond]) -> str:
    return "(" + " AND ".join(_probe(k, q) for k, q, _ in conds) + ")" if conds else "1"


def _group(conds: list[Cond]) -> tuple[str, list[Any]]:
    """Conditions joined by 'and', as set operations on rids: SQLite evaluates them
    left to right, so the kept sets are intersected first and the dropped ones taken out."""
    keep = [c for c in conds if c[0]] or [(True, "SELECT rid FROM runs", [])]
    drop = [c for c in conds if not c[0]]
    sql = " INTERSECT ".join(q for _, q, _ in keep)
    sql += "".join(f" EXCEPT {q}" for _, q, _ in drop)
    return f"rid IN ({sql})", [p for _, _, ps in keep + drop for p in ps]


def compile_filter(expr: str | None, sections: Sections) -> Compiled:
    """Turn a filter expression into a SQL WHERE clause and its parameters."""
    out = Compiled()
    if not expr or not expr.strip():
        return out
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
        groups[-1].append(_condition(part, sections, out.unknown))
    compiled = [_group(g) for g in groups]
    out.sql = " OR ".join(sql for sql, _ in compiled)
    out.params = [p for _, ps in compiled for p in ps]
    # The probes take their parameters in the conditions' order, as the sets do (kept
    # ones first): order each group's conditions the same way.
    ordered = [[c for c in g if c[0]] + [c for c in g if not c[0]] for g in groups]
    out.scan = " OR ".join(_scan(g) for g in ordered)
    return out


def compile_sort(spec: str | None, sections: Sections) -> Compiled:
    """--sort KEY[:asc|:desc] (default descending, missing values last)."""
    if not spec:
        return Compiled("created_at DESC")
    key, _, direction = spec.partition(":")
    direction = (direction or "desc").lower()
    key = key.strip()
    if direction not in ("asc", "desc") or not key:
        raise UsageError(f"--sort expects KEY or KEY:asc or KEY:desc, got '{spec}'")
    out = Compiled()
    if key in FIELDS:
        sql, params = key, []
    else:
        sec, name = _key(key, sections, out.unknown)
        sql = "(SELECT val FROM run_values WHERE rid = runs.rid AND sec = ? AND key = ?)"
        params = [sec, name]
    out.sql = f"{sql} IS NULL, {sql} {direction.upper()}"
    out.params = params + params
    return out
