"""`datmo notebook`, `datmo jupyterlab`, `datmo rstudio`, `datmo terminal`."""

from __future__ import annotations

import sys
from typing import Any

import click

from datmo.cli.ending import datmo_failure_exit, exit_code
from datmo.cli.output import echo, note
from datmo.cli.run import build_spec, task_options


def _server_command(kind: str, title: str, example: str) -> click.Command:
    @click.command(name=kind, help=f"{title}\n\nExample: {example}")
    @task_options
    @click.option("--no-browser", is_flag=True, help="Do not open the URL in a browser.")
    def command(no_browser: bool, **kw: Any) -> None:
        from datmo.core.controller import task, workspace

        ports = list(kw.pop("ports", ()))
        host_port = None
        if ports and ports[0].isdigit():
            host_port = int(ports.pop(0))  # a bare number: the host port for the server
        with datmo_failure_exit():
            ctx, spec = build_spec("", ports=tuple(ports), **kw)
            opened = workspace.open_workspace(ctx, kind, spec, host_port, note)
        echo(opened.url)
        if opened.login:
            echo(f"login: {opened.login}")
        if not no_browser and not kw.get("detach"):
            _open_browser(opened.url)
        if kw.get("detach"):
            note(
                f"{kind} {opened.run.id[:8]} runs in the background; "
                f"stop it with 'datmo stop {opened.run.id[:8]}'"
            )
            return
        note(f"{kind} {opened.run.id[:8]} is ready; Ctrl-C stops it and takes its after snapshot")
        final = task.follow(ctx, opened.run, sys.stderr.buffer, on_stop=note)
        sys.exit(exit_code(final, note))

    return command


def _open_browser(url: str) -> None:
    import webbrowser

    try:
        webbrowser.get()
    except webbrowser.Error:
        return  # no browser on this machine (a server, a container): the URL is printed
    webbrowser.open(url)


notebook = _server_command(
    "notebook", "Open Jupyter Notebook in the project's environment.", "datmo notebook --gpu"
)
jupyterlab = _server_command(
    "jupyterlab", "Open JupyterLab in the project's environment.", "datmo jupyterlab -p 8888"
)
rstudio = _server_command(
    "rstudio", "Open RStudio Server in the project's environment.", "datmo rstudio --no-browser"
)


@click.command()
@task_options
def terminal(**kw: Any) -> None:
    """Open a shell in the project's environment, recorded as a run.

    Example: datmo terminal --gpu
    """
    from datmo.core.controller.interactive import run_interactive

    with datmo_failure_exit():
        ctx, spec = build_spec(
            "if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi", **kw
        )
        spec.type = "terminal"
        final = run_interactive(ctx, spec, progress=note)
    sys.exit(exit_code(final, note))
