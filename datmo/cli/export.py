"""`datmo export mlflow`: runs into another tool's store."""

from __future__ import annotations

import click

from datmo.cli.output import echo, note


@click.group()
def export() -> None:
    """Write runs into another tracking tool.

    Example: datmo export mlflow --tracking-uri sqlite:///mlflow.db
    """


@export.command()
@click.argument("ids", nargs=-1)
@click.option(
    "--tracking-uri",
    required=True,
    metavar="URI",
    help="sqlite:///mlflow.db, http://host:5000, ...",
)
@click.option(
    "--experiment", metavar="NAME", help="MLflow experiment (default: the project's name)."
)
@click.option("--all", "all_", is_flag=True, help="Every finished run (the default).")
def mlflow(ids: tuple[str, ...], tracking_uri: str, experiment: str | None, all_: bool) -> None:
    """Export finished runs to MLflow (pip install 'datmo[mlflow]').

    Config becomes params, every metric's series keeps its steps, and the datmo ids
    become tags; exporting again writes nothing twice.
    Example: datmo export mlflow --tracking-uri sqlite:///mlflow.db --experiment resnet 3f2a
    """
    from datmo.core.controller import mlflowexport as ctl
    from datmo.core.controller.project import open_project

    if all_ and ids:
        raise click.UsageError("give IDs or --all, not both")
    result = ctl.export(open_project(), tracking_uri, experiment, ids)
    for run in result.unfinished:
        note(f"not exported: run {run.id[:8]} is {run.status} (only finished runs are exported)")
    for line in result.notes:
        note(line)
    again = f", {len(result.unchanged)} exported before" if result.unchanged else ""
    echo(f"exported {len(result.created)} run(s) to experiment '{result.experiment}'{again}")
