"""`datmo ui`: the project's dashboard in a browser (datmo/ui/)."""

from __future__ import annotations

import click

from datmo.cli.output import echo, note
from datmo.errors import DatmoError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def need_werkzeug() -> None:
    try:
        import werkzeug  # noqa: F401
    except ImportError:
        raise DatmoError(
            "the dashboard needs Werkzeug, which is missing: pip install 'datmo[ui]'"
        ) from None


@click.command()
@click.option("--port", type=int, help="Port to serve on (default: 8765 or the next free one).")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to serve on. Another than 127.0.0.1 lets other machines reach it.",
)
@click.option("--no-browser", is_flag=True, help="Print the address only; open no browser.")
def ui(port: int | None, host: str, no_browser: bool) -> None:
    """Serve this project's dashboard: runs, charts, compare, snapshots and sweeps.

    It listens on 127.0.0.1 only, with a fresh token in its address (the browser is
    opened through a private file, so the token never shows in `ps`). Ctrl-C stops it.
    Example: datmo ui --no-browser --port 8800
    """
    need_werkzeug()
    from datmo.core.controller.project import open_project
    from datmo.ui import serve

    ctx = open_project()
    if host not in LOOPBACK:
        note(
            f"datmo ui: warning: serving on {host}: anyone who can reach this machine and "
            "has the address (with its token) can read this project"
        )
    server = serve.start(ctx, host, port)
    echo(f"datmo ui: serving {ctx.root} at")
    echo(f"    {server.url}")
    echo("Press Ctrl-C to stop.")
    serve.run(server, browser=not no_browser, say=echo)
