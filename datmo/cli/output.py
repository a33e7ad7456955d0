"""Rendering results as a table, JSON or CSV. Commands pick columns; this formats."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

import click

from datmo.cli.console import printable

FORMATS = ("table", "json", "csv")

format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Output format.",
)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    return str(value)


def render(rows: Sequence[dict[str, Any]], columns: Sequence[str], fmt: str) -> str:
    """rows keep their full values for JSON; the table and CSV show `columns`."""
    if fmt == "json":
        return json.dumps(list(rows), indent=2, ensure_ascii=False, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(
                json.dumps(row.get(c), sort_keys=True)
                if isinstance(row.get(c), (dict, list))
                else _cell(row.get(c))
                for c in columns
            )
        return buf.getvalue().rstrip("\n")
    if not rows:
        return "(none)"
    from tabulate import tabulate  # only tables need it

    return tabulate(
        [[_cell(row.get(c)) for c in columns] for row in rows],
        headers=list(columns),
        tablefmt="simple",
        disable_numparse=True,
    )


def echo(text: str) -> None:
    click.echo(printable(text))


def note(text: str) -> None:
    """Secondary information goes to stderr so stdout stays parseable."""
    click.echo(printable(text), err=True)
