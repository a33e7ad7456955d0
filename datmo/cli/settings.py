"""`datmo settings`: how datmo behaves in this project."""

from __future__ import annotations

import json

import click

from datmo.cli.output import echo, format_option, render


@click.group()
def settings() -> None:
    """Show and change this project's settings (kept in .datmo/project.json).

    Example: datmo settings set run.capture false
    """


@settings.command(name="ls")
@format_option
def ls_cmd(fmt: str) -> None:
    """Every setting, its value, and whether this project set it.

    Example: datmo settings ls
    """
    from datmo.core.controller import settings as ctl
    from datmo.core.controller.project import open_project

    rows = [
        {"name": s.name, "value": v, "set": mine, "help": s.help}
        for s, v, mine in ctl.values(open_project())
    ]
    for row in rows if fmt == "table" else []:
        row["value"] = json.dumps(row["value"])
        row["set"] = "here" if row["set"] else "default"
    echo(render(rows, ["name", "value", "set", "help"], fmt))


@settings.command()
@click.argument("name")
def get(name: str) -> None:
    """Print one setting's value.

    Example: datmo settings get run.capture
    """
    from datmo.core.controller import settings as ctl
    from datmo.core.controller.project import open_project

    echo(json.dumps(ctl.get(open_project(), name)))


@settings.command(name="set")
@click.argument("name")
@click.argument("value")
def set_cmd(name: str, value: str) -> None:
    """Change a setting for this project.

    Example: datmo settings set run.capture false
    """
    from datmo.core.controller import settings as ctl
    from datmo.core.controller.project import open_project

    echo(f"{name} = {json.dumps(ctl.set_value(open_project(), name, value))}")


@settings.command()
@click.argument("name")
def unset(name: str) -> None:
    """Go back to a setting's default.

    Example: datmo settings unset run.capture
    """
    from datmo.core.controller import settings as ctl
    from datmo.core.controller.project import open_project

    ctl.unset(open_project(), name)
    echo(f"{name} is back to its default")
