"""The `datmo` command: the group, global options and the error boundary (click's usage
errors here; every other error through datmo.cli.console.report, shared with the quick path)."""

from __future__ import annotations

import os
import sys

import click

from datmo import __version__
from datmo.cli.console import one_line, report

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class LazyGroup(click.Group):
    """Loads a subcommand's module only when that subcommand runs (fast --help and start-up)."""

    def __init__(self, *args: object, lazy: dict[str, str] | None = None, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module_name, _, attr = self.lazy[name].partition(":")
            module = __import__(module_name, fromlist=[attr])
            cmd: click.Command = getattr(module, attr)
            return cmd
        return super().get_command(ctx, name)


@click.group(
    cls=LazyGroup,
    context_settings=CONTEXT,
    lazy={
        "init": "datmo.cli.project:init",
        "status": "datmo.cli.project:status",
        "cleanup": "datmo.cli.project:cleanup",
        "snapshot": "datmo.cli.snapshot:snapshot",
        "environment": "datmo.cli.environment:environment",
        "run": "datmo.cli.run:run",
        "ls": "datmo.cli.run:ls",
        "logs": "datmo.cli.run:logs",
        "stop": "datmo.cli.run:stop",
        "delete": "datmo.cli.run:delete",
        "rerun": "datmo.cli.rerun:rerun",
        "tag": "datmo.cli.run:tag",
        "notebook": "datmo.cli.workspace:notebook",
        "jupyterlab": "datmo.cli.workspace:jupyterlab",
        "rstudio": "datmo.cli.workspace:rstudio",
        "terminal": "datmo.cli.workspace:terminal",
        "fsck": "datmo.cli.maintenance:fsck",
        "gc": "datmo.cli.maintenance:gc",
        "settings": "datmo.cli.settings:settings",
        "queue": "datmo.cli.queue:queue",
        "sweep": "datmo.cli.sweep:sweep",
        "ui": "datmo.cli.ui:ui",
        "plot": "datmo.cli.plot:plot",
        "remote": "datmo.cli.remote:remote",
        "push": "datmo.cli.remote:push",
        "pull": "datmo.cli.remote:pull",
        "clone": "datmo.cli.remote:clone",
        "bundle": "datmo.cli.bundle:bundle",
        "export": "datmo.cli.export:export",
    },
)
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(__version__, "--version", prog_name="datmo", message="datmo %(version)s")
def cli(debug: bool) -> None:
    """datmo: reproducible machine-learning work.

    \b
    Start in a project folder:
      datmo init
      datmo snapshot create -m "baseline" -c lr=0.01 -s acc=0.91
      datmo snapshot ls
    """


@cli.command()
def version() -> None:
    """Print datmo's version.

    Example: datmo version
    """
    click.echo(f"datmo {__version__}")


RUN_COMMANDS = ("run", "rerun", "notebook", "jupyterlab", "rstudio", "terminal")


def _is_run_command(args: list[str]) -> bool:
    """`datmo run` and its kin exit 125 for datmo's own failures, bad options included."""
    words = [a for a in args if not a.startswith("-")]
    return bool(words) and words[0] in RUN_COMMANDS


def main(argv: list[str] | None = None) -> None:
    """Entry point: every DatmoError becomes one line on stderr and its exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or bool(os.environ.get("DATMO_DEBUG"))
    try:
        _command(args, debug)
    finally:
        _close_index()
    sys.exit(0)


def _close_index() -> None:
    """The run index a command kept open, closed as a short-lived process always did:
    the last connection's close folds SQLite's WAL back into the file."""
    index = sys.modules.get("datmo.core.storage.index")
    if index is not None:
        index.close_shared()


def _command(args: list[str], debug: bool) -> None:
    try:
        cli.main(args=args, prog_name="datmo", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.UsageError as e:
        # One line, like every other error; click's own form is several.
        where = e.ctx.command_path if e.ctx else "datmo"
        click.echo(f"datmo: error: {one_line(e.format_message())} (see '{where} --help')", err=True)
        sys.exit(125 if _is_run_command(args) else e.exit_code)
    except click.ClickException as e:
        click.echo(f"datmo: error: {one_line(e.format_message())}", err=True)
        sys.exit(e.exit_code)
    except click.Abort:
        if debug:
            raise
        sys.exit(report(KeyboardInterrupt(), debug=False))
    except (Exception, KeyboardInterrupt) as e:
        sys.exit(report(e, debug))
