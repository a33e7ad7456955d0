"""`datmo bundle create` and `datmo bundle import`."""

from __future__ import annotations

from pathlib import Path

import click

from datmo.cli.output import echo, note
from datmo.cli.remote import _counts


@click.group()
def bundle() -> None:
    """Snapshots and runs as one file: to e-mail, archive or attach to a paper.

    Example: datmo bundle create results.datmo --all
    """


@bundle.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every snapshot and finished run (the default).")
def create(file: Path, ids: tuple[str, ...], all_: bool) -> None:
    """Write what 'datmo push' would send into FILE.

    IDs name runs or snapshots (none, or --all: every snapshot and finished run); each
    comes with everything it needs. Read it with 'datmo bundle import' or 'datmo clone'.
    Example: datmo bundle create paper-results.datmo 3f2a 9c1d
    """
    from datmo.core.controller import bundle as ctl
    from datmo.core.controller.project import open_project

    if all_ and ids:
        raise click.UsageError("give IDs or --all, not both")
    plan = ctl.create(open_project(), file, ids)
    sent = {k: plan.count(k) for k in plan.envelopes}
    size = file.stat().st_size
    echo(f"wrote {file}: {_counts(sent)} ({len(plan.objects)} object(s), {size} bytes)")


@bundle.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def import_cmd(file: Path) -> None:
    """Read a bundle into this project; what it has already stays as it is.

    The whole bundle is checked first: a damaged one is refused and nothing is imported.
    Nothing in it is run.
    Example: datmo bundle import paper-results.datmo
    """
    from datmo.core.controller import bundle as ctl
    from datmo.core.controller.project import open_project

    done = ctl.import_(open_project(), file)
    for line in done.skipped:
        note(f"not imported: {line}")
    if not any(done.added.values()):
        echo(f"nothing new in {file}")
        return
    echo(f"imported {_counts(done.added)} from {file}")
