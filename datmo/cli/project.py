"""`datmo init`, `datmo status`, `datmo cleanup`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from datmo.cli.output import echo, note


@click.command()
@click.option("--name", help="Project name (default: the folder's name).")
@click.option("--description", help="One line describing the project.")
@click.option("--force", is_flag=True, help="Allow the home folder or /, or a nested project.")
@click.option(
    "--executor",
    type=click.Choice(["docker", "local", "slurm"]),
    help="Where runs go by default (docker when an engine answers, else local).",
)
def init(name: str | None, description: str | None, force: bool, executor: str | None) -> None:
    """Make the current folder a datmo project (or update it, keeping its id).

    Example: datmo init --name mnist --description "digit classifier"
    """
    from datmo.core.controller import project

    result = project.init(Path.cwd(), name, description, force, executor)
    info = result.ctx.info
    verb = "Initialized" if result.created else "Updated"
    echo(f"{verb} datmo project '{info.name}' ({info.id[:8]}) in {result.ctx.store.dir}")
    if executor:
        note(f"Runs go to {executor} by default; --executor picks another for one run.")
        if executor == "slurm":
            note("Set Slurm defaults with 'datmo settings set slurm.partition NAME' (and slurm.*)")
    elif result.created and info.default_executor == "docker":
        note("Runs use Docker by default (a Docker engine answers); --executor local skips it.")
    elif result.created:
        note(
            "No Docker engine answers, so runs execute as local processes by default; "
            "start Docker and use --executor docker to run in containers."
        )
    if result.gitignore_updated:
        note("Added .datmo/ to .gitignore so your git repository ignores datmo's store.")


@click.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def status(fmt: str) -> None:
    """Show the current snapshot and what changed since it.

    Example: datmo status
    """
    from datmo.core.controller import project
    from datmo.core.controller.project import open_project

    st = project.status(open_project())
    cur = st.current
    if fmt == "json":
        doc = {
            "project": st.project.name,
            "current_snapshot": cur.id if cur else None,
            "code": vars(st.code),
            "files": vars(st.files),
            "config_changed": st.config_changed,
            "metrics_changed": st.metrics_changed,
            "config_keys": st.config_keys,
            "metric_keys": st.metric_keys,
            "clean": not (st.code or st.files),
        }
        echo(json.dumps(doc, indent=2))
        return
    echo(f"project: {st.project.name}")
    if cur is None:
        echo("current snapshot: none yet (create one with 'datmo snapshot create -m MSG')")
    else:
        hidden = " (hidden)" if cur.hidden else ""
        echo(f"current snapshot: {cur.id[:8]}{hidden} {cur.message!r} at {cur.created_at}")
    if not (st.code or st.files):
        echo("nothing changed since the current snapshot")
        return
    for title, ch in (("code", st.code), ("files", st.files)):
        if not ch:
            continue
        echo(f"{title} changed:")
        for mark, paths in (("+", ch.added), ("-", ch.removed), ("M", ch.changed)):
            for p in paths[:50]:
                echo(f"  {mark} {p}")
            if len(paths) > 50:
                echo(f"  {mark} ... and {len(paths) - 50} more")
    for what, changed, keys, name in (
        ("config", st.config_changed, st.config_keys, "config.json"),
        ("metrics", st.metrics_changed, st.metric_keys, "stats.json"),
    ):
        if changed:
            shown = ", ".join(f"{k} {_v(a)} -> {_v(b)}" for k, (a, b) in keys.items())
            echo(f"{what} changed ({name}){': ' + shown if shown else ''}")


def _v(value: object) -> str:
    return "(none)" if value is None else json.dumps(value)


@click.command()
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def cleanup(yes: bool) -> None:
    """Remove datmo from this project: deletes .datmo and every snapshot in it.

    Your own files are not touched. Example: datmo cleanup --yes
    """
    from datmo.core.controller import project
    from datmo.core.controller.project import open_project
    from datmo.errors import DatmoError

    ctx = open_project(recover=False)  # cleanup must work even when recovery cannot
    if not yes:
        if not sys.stdin.isatty():
            raise DatmoError("cleanup deletes every snapshot; pass --yes to confirm")
        click.confirm(f"Delete {ctx.store.dir} and every snapshot in it?", abort=True)
    project.cleanup(ctx)
    echo(f"Removed {ctx.store.dir}")
