"""Placeholders in a run's command: `datmo run -c lr=0.01 "python train.py --lr {lr}"`.

Exactly: `{name}` with `name` an identifier is a placeholder, replaced by the config
value as one shell word (shlex.quote of its text: numbers as they were typed, booleans
as true/false), so no value can start a second command or split into two arguments.
`{{name}}` writes a literal `{name}`. Everything else is left as typed: `${...}`, other
doubled braces (`--format '{{.Id}}'`) and braces around anything that is not an
identifier (`awk '{print $1}'`). A placeholder inside quotes, or one that names no
config key, is refused before anything is made.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from typing import Any

from datmo.errors import UsageError

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def value_text(value: Any, typed: str | None = None) -> str:
    """The text a config value is written as: as typed on the command line when it was,
    else true/false, numbers as JSON has them, text as is, lists and mappings as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if typed is not None and isinstance(value, (int, float)):
        return typed.strip()
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _placeholder_at(command: str, i: int) -> tuple[str, int] | None:
    """(name, end) for `{name}` starting at i, if it is one."""
    m = _IDENT.match(command, i + 1)
    if m and m.end() < len(command) and command[m.end()] == "}":
        return m.group(), m.end() + 1
    return None


def placeholders(command: str) -> list[str]:
    """The config keys a command names, in order (duplicates kept once)."""
    return list(dict.fromkeys(name for name, _, _ in _scan(command)))


def _scan(command: str) -> list[tuple[str, int, int]]:
    """(name, start, end) of each placeholder; refuses one inside quotes."""
    found: list[tuple[str, int, int]] = []
    quote = ""  # the quote we are inside: "", "'" or '"'
    i, n = 0, len(command)
    while i < n:
        c = command[i]
        if c == "{":
            if command.startswith("{{", i):
                inner = _placeholder_at(command, i + 1)
                if inner and command.startswith("}", inner[1]):
                    i = inner[1] + 1  # {{name}}: a literal, replaced by {name}
                else:
                    i += 2
                continue
            hit = None if i and command[i - 1] == "$" else _placeholder_at(command, i)
            if hit:
                name, end = hit
                if quote:
                    raise UsageError(
                        f"the placeholder {{{name}}} is inside quotes; remove the quotes "
                        f"(datmo passes each value as one word), or write {{{{{name}}}}} "
                        f"for a literal {{{name}}}"
                    )
                found.append((name, i, end))
                i = end
                continue
        elif quote == "'":
            if c == "'":
                quote = ""
        elif c == "\\":
            i += 2  # an escaped character, outside single quotes
            continue
        elif c == quote == '"':
            quote = ""
        elif c in "'\"" and not quote:
            quote = c
        i += 1
    return found


def expand(command: str, config: Mapping[str, Any], typed: Mapping[str, str]) -> str:
    """The command with its placeholders filled in from config (typed: the text of the
    values given with -c, so numbers keep the form they were typed in)."""
    found = _scan(command)
    missing = [name for name, _, _ in found if name not in config]
    if missing:
        name = missing[0]
        raise UsageError(
            f"the placeholder {{{name}}} names no config key; pass -c {name}=VALUE or "
            f"add {name} to the project's config file"
        )
    out, last = [], 0
    for name, start, end in found:
        out.append(_literals(command[last:start]))
        out.append(shlex.quote(value_text(config[name], typed.get(name))))
        last = end
    out.append(_literals(command[last:]))
    return "".join(out)


def _literals(text: str) -> str:
    """{{name}} -> {name}; every other brace stays as typed."""
    return re.sub(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}", r"{\1}", text)
