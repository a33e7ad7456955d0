"""`datmo rerun`: a run again, and whether it reproduced the original."""

from __future__ import annotations

import sys

import click

from datmo.cli.ending import datmo_failure_exit, exit_code
from datmo.cli.output import echo, format_option, note, render


@click.command()
@click.argument("run_id")
@click.option("--verify", is_flag=True, help="Compare its outputs with the original's.")
@click.option(
    "--ignore",
    multiple=True,
    metavar="GLOB",
    help="With --verify: leave these files out (such as 'logs/*'). Repeatable.",
)
@click.option(
    "--rtol", type=float, default=0.0, metavar="X", help="With --verify: metrics may differ by X."
)
@click.option("-d", "--detach", is_flag=True, help="Return at once (not with --verify).")
@click.option(
    "-e",
    "--env",
    "env",
    multiple=True,
    metavar="KEY=VALUE",
    help="Give a secret the original run used.",
)
@format_option
def rerun(
    run_id: str,
    verify: bool,
    ignore: tuple[str, ...],
    rtol: float,
    detach: bool,
    env: tuple[str, ...],
    fmt: str,
) -> None:
    """Run a run again: same command, config, options, before snapshot and image.

    It runs in a scratch copy and never touches your working tree. --verify compares
    the files the original created or changed and its metrics with the rerun's; exit
    code 0 when all match, 1 when an output differs, 125 or the task's own code when the
    rerun itself failed.

    Example: datmo rerun 3f2a --verify --ignore 'logs/*' --rtol 1e-6
    """
    from datmo.core.controller import rerun as ctl
    from datmo.core.controller.project import open_project

    ctx = open_project()
    with datmo_failure_exit():
        if verify and detach:
            raise click.UsageError("--verify waits for the rerun; drop --detach")
        if (ignore or rtol) and not verify:
            raise click.UsageError("--ignore and --rtol go with --verify")
        started = ctl.start(ctx, run_id, env, detach=detach, progress=note)
    if detach:
        echo(started.id)
        return
    from datmo.core.controller import task

    note(f"rerun {started.id[:8]} of {run_id} started")
    out = sys.stderr.buffer if verify else sys.stdout.buffer
    final = task.follow(ctx, started, out, on_stop=note)
    code = exit_code(final, note)
    if not verify:
        sys.exit(code)
    from datmo.core.controller import run as runs
    from datmo.core.controller import verify as check

    original = runs.get(ctx, run_id)
    if check.failed(original, final):
        note(f"the rerun itself failed ({final.status}); nothing to compare")
        sys.exit(code or 125)
    with datmo_failure_exit():
        report = check.verify(ctx, original.id, final.id, ignore, rtol)
    if fmt == "json":
        import json

        echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        rows = [
            {**r, "same": "same" if r["same"] else "DIFFERS", "difference": r.get("difference")}
            for r in report.rows
        ]
        cols = ["kind", "name", "original", "rerun", "same", "difference"]
        echo(render(rows, cols, fmt))
    note(report.summary())
    sys.exit(0 if report.identical else 1)
