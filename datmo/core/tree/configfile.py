"""A project's config file rewritten with a run's `-c` values, as DVC's
`exp run --set-param` does: the task that opens config.json (or params.yaml) reads
exactly the config its run records.

Only the changed values are rewritten, in place: comments, key order, indentation and
quoting of everything else stay as they were (a JSON file is YAML too, so one parser
finds where each value is). New keys go at the end. Whatever the edit, the result is
parsed again and must hold exactly the merged mapping; if it would not (an odd layout),
the whole file is written out plainly instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from datmo.core.storage.fsutil import Owner, atomic_write_bytes
from datmo.errors import UsageError

NAME = "config.json"  # the project's config file, when no other is named


def is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def changed(current: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """The given values that the file does not already hold."""
    return {k: v for k, v in given.items() if k not in current or current[k] != v}


def merged_text(text: str, current: Mapping[str, Any], changes: Mapping[str, Any]) -> str:
    """The config file's text with changes written in (it holds current now)."""
    as_json = is_json(text)
    want = {**current, **changes}
    new = _edited(text, changes, as_json)
    if new is None or _parsed(new, as_json) != want:
        new = _plain(want, text, as_json)
    return new


def rewrite(
    path: Path, current: Mapping[str, Any], changes: Mapping[str, Any], owner: Owner | None
) -> None:
    """Write changes into the config file at path, which holds current now."""
    new = merged_text(path.read_text(encoding="utf-8"), current, changes)
    mode = os.stat(path).st_mode & 0o7777
    atomic_write_bytes(path, new.encode("utf-8"), owner, mode)


def _parsed(text: str, as_json: bool) -> Any:
    import yaml

    try:
        return json.loads(text) if as_json else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError):
        return None


def _render(value: Any, as_json: bool) -> str:
    if as_json:
        return json.dumps(value, ensure_ascii=False)
    import yaml

    # A one-item flow list renders any value on one line, quoted where YAML needs it.
    text = yaml.safe_dump([value], default_flow_style=True, width=1 << 30, allow_unicode=True)
    return text.strip()[1:-1]


def _edited(text: str, changes: Mapping[str, Any], as_json: bool) -> str | None:
    """The text with each changed value replaced where it stands; None if the file's
    top level is not a mapping this can edit."""
    import yaml

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return None
    if not isinstance(root, yaml.MappingNode):
        return None
    nodes = {k.value: (k, v) for k, v in root.value if isinstance(k, yaml.ScalarNode)}
    edits: list[tuple[int, int, str]] = []
    added: list[tuple[str, Any]] = []
    for key, value in changes.items():
        if key not in nodes:
            added.append((key, value))
            continue
        k, v = nodes[key]
        if isinstance(v, yaml.ScalarNode) or v.flow_style:
            edits.append((v.start_mark.index, v.end_mark.index, _render(value, as_json)))
        else:  # a block list or mapping: the new value goes on the key's line
            span = text[k.end_mark.index : v.end_mark.index]
            tail = "\n" if span.endswith("\n") else ""
            edits.append((k.end_mark.index, v.end_mark.index, f": {_render(value, as_json)}{tail}"))
    if added:
        edits.append(_additions(text, root, added, as_json))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def _additions(
    text: str, root: Any, added: list[tuple[str, Any]], as_json: bool
) -> tuple[int, int, str]:
    pairs = [f"{_render(k, as_json)}: {_render(v, as_json)}" for k, v in added]
    if not root.flow_style:  # a block mapping: new lines at the end
        end = len(text)
        sep = "" if not text or text.endswith("\n") else "\n"
        return end, end, sep + "".join(f"{p}\n" for p in pairs)
    close = root.end_mark.index - 1  # the closing brace
    if not root.value:
        return close, close, ", ".join(pairs)
    last = root.value[-1][1].end_mark.index
    line_start = text.rfind("\n", 0, root.value[-1][0].start_mark.index) + 1
    indent = text[line_start : root.value[-1][0].start_mark.index]
    if "\n" in text[root.start_mark.index : close] and not indent.strip():
        return last, last, "".join(f",\n{indent}{p}" for p in pairs)
    return last, last, "".join(f", {p}" for p in pairs)


def _plain(want: Mapping[str, Any], old: str, as_json: bool) -> str:
    if as_json:
        indent = 2 if "\n" in old.strip() else None
        return json.dumps(dict(want), indent=indent, ensure_ascii=False) + "\n"
    import yaml

    return yaml.safe_dump(dict(want), sort_keys=False, allow_unicode=True)


def check_writable(path: Path, root: Path) -> None:
    """A config file outside the working tree is never rewritten."""
    real, top = os.path.realpath(path), os.path.realpath(root)
    if not real.startswith(top + os.sep):
        raise UsageError(
            f"{path} is outside the project, so -c cannot be written into it; move it into "
            "the project, or read the run's config with datmo.config() or $DATMO_CONFIG_FILE"
        )
