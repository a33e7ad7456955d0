"""`datmo ls` as a table or CSV: one column per config and metric key.

The table shows, by default, only the config keys whose values differ among the runs
listed (a script with twenty flags would make every row hundreds of characters wide),
rounds floats to a readable precision and fits the terminal; `--columns` picks columns.
CSV has every key in a column of its own (`config.lr`, `metrics.acc`) at full precision,
so it opens in a spreadsheet; JSON is the records themselves.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from typing import Any

from datmo.errors import UsageError

FIELDS = {
    "id": "id",
    "status": "status",
    "type": "type",
    "tags": "tags",
    "message": "message",
    "command": "command",
    "environment": "environment_id",
    "exit_code": "exit_code",
    "created": "created_at",
    "started": "started_at",
    "duration": "duration_s",
    "slurm": "slurm",
    "from": "origin",
}


def _keys(runs: Sequence[Any], attr: str) -> list[str]:
    """Every key of runs' config or metrics, in one order everywhere: sorted."""
    return sorted({k for r in runs for k in getattr(r, attr)})


def varying(runs: Sequence[Any]) -> list[str]:
    """The config keys whose values are not the same in every run listed."""
    keys = _keys(runs, "config")
    if len(runs) <= 1:
        return keys
    missing = object()
    return [k for k in keys if len({repr(r.config.get(k, missing)) for r in runs}) > 1]


def columns(runs: Sequence[Any], picked: str | None, table: bool) -> list[tuple[str, str, str]]:
    """(header, section, key) for each column: section 'field', 'config' or 'metrics'."""
    config, metrics = _keys(runs, "config"), _keys(runs, "metrics")
    if picked:
        return [
            _column(name.strip(), config, metrics) for name in picked.split(",") if name.strip()
        ]
    out = [("id", "field", "id"), ("status", "field", "status")]
    if any(r.type != "task" for r in runs):  # workspaces among the runs
        out.append(("type", "field", "type"))
    if any(r.tags for r in runs):
        out.append(("tags", "field", "tags"))
    if any(r.slurm for r in runs):  # runs on Slurm: the job, and Slurm's word on it
        out.append(("slurm", "field", "slurm"))
    if any(r.message for r in runs):
        out.append(("message", "field", "message"))
    out.append(("command", "field", "command"))
    if any(r.origin for r in runs):  # pulled runs: the remote or bundle they came from
        out.append(("from", "field", "origin"))
    shown = varying(runs) if table else config
    both = set(config) & set(metrics)
    out += [(f"config.{k}" if k in both or not table else k, "config", k) for k in shown]
    out += [(f"metrics.{k}" if k in both or not table else k, "metrics", k) for k in metrics]
    out += [("started", "field", "started_at"), ("duration", "field", "duration_s")]
    return out


def _column(name: str, config: list[str], metrics: list[str]) -> tuple[str, str, str]:
    if name in FIELDS:
        return name, "field", FIELDS[name]
    for section in ("config", "metrics"):
        if name.startswith(section + "."):
            return name, section, name[len(section) + 1 :]
    if name in config and name in metrics:
        raise UsageError(
            f"--columns: '{name}' is both a config key and a metric; write config.{name} "
            f"or metrics.{name}"
        )
    if name in config:
        return name, "config", name
    if name in metrics:
        return name, "metrics", name
    known = ", ".join([*FIELDS, *config, *metrics])
    raise UsageError(f"--columns: no column '{name}'; choose from {known}")


def _value(run: Any, section: str, key: str) -> Any:
    if section == "field":
        return getattr(run, key)
    return getattr(run, section).get(key)


def readable(value: Any) -> str:
    """A cell of the table: floats rounded, lists joined, nothing for None."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(readable(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={readable(v)}" for k, v in value.items())
    return str(value)


def _cell(run: Any, section: str, key: str) -> str:
    value = _value(run, section, key)
    if key == "id":
        return str(value)[:8]
    if key == "environment_id":
        return "local" if run.executor == "local" else (value or "")[:8]
    if key in ("started_at", "created_at"):
        return (value or "")[:19].replace("T", " ")
    if key == "status" and value == "FAILED" and run.exit_code is not None:
        return f"FAILED ({run.exit_code})"
    if key == "slurm":
        return slurm_cell(value)
    return readable(value)


def slurm_cell(job: dict[str, Any]) -> str:
    """'123_0 PENDING (Resources)', '123_0 on node7', '123_0 TIMEOUT'."""
    if not job:
        return ""
    shown = str(job.get("job") or "")
    state, reason = job.get("state"), job.get("reason")
    if state:
        shown += f" {state}" + (f" ({reason})" if reason else "")
    elif job.get("node"):
        shown += f" on {job['node']}"
    return shown


def table(
    runs: Sequence[Any], cols: list[tuple[str, str, str]], width: int | None
) -> tuple[str, list[str]]:
    """(the table, the headers of columns left out to fit width)."""
    from tabulate import tabulate  # only tables need it

    if not runs:
        return "(none)", []
    rows = [[_cell(r, s, k) for _, s, k in cols] for r in runs]
    limits = {"command": 40, "message": 30}
    for i, (_, _, key) in enumerate(cols):
        if key in limits:
            for row in rows:
                row[i] = _clip(row[i], limits[key])
    dropped: list[str] = []
    while True:
        text = tabulate(
            rows, headers=[h for h, _, _ in cols], tablefmt="simple", disable_numparse=True
        )
        too_wide = width is not None and max(map(len, text.splitlines())) > width
        if not too_wide:
            return text, dropped
        gone = _least_needed(cols)
        if gone is None:
            return text, dropped
        dropped.insert(0, cols[gone][0])
        del cols[gone]
        for row in rows:
            del row[gone]


def _least_needed(cols: list[tuple[str, str, str]]) -> int | None:
    """Which column goes first when the table is too wide: config, then message, then
    metrics, from the right; id, status and command stay."""
    for wanted in ("config", "message", "started_at", "metrics", "tags", "duration_s", "slurm"):
        for i in range(len(cols) - 1, -1, -1):
            _, section, key = cols[i]
            if wanted in (section, key):
                return i
    return None


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def csv_text(runs: Sequence[Any], cols: list[tuple[str, str, str]]) -> str:
    import csv
    import io
    import json

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([h for h, _, _ in cols])
    for run in runs:
        cells = []
        for _, section, key in cols:
            value = _value(run, section, key)
            if isinstance(value, (dict, list, bool)):
                cells.append(json.dumps(value, sort_keys=True))
            else:
                cells.append("" if value is None else str(value))
        writer.writerow(cells)
    return buf.getvalue().rstrip("\n")


def terminal_width() -> int | None:
    """The terminal's width when the table goes to one; None (no limit) otherwise."""
    if not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size((100, 24)).columns
