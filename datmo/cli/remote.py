"""`datmo remote`, `datmo push`, `datmo pull` and `datmo clone`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from datmo.cli.output import echo, format_option, note, render


@click.group()
def remote() -> None:
    """Places this project's snapshots and runs are shared: a folder, ssh:// or s3://.

    Example: datmo remote add origin /mnt/share/datmo/myproject
    """


@remote.command()
@click.argument("name")
@click.argument("url")
@click.option(
    "--default", "default", is_flag=True, help="Push and pull here when no name is given."
)
@click.option(
    "--endpoint-url", metavar="URL", help="An S3-compatible store (MinIO, Ceph) for s3://."
)
def add(name: str, url: str, default: bool, endpoint_url: str | None) -> None:
    """Add a remote: a folder, ssh://[user@]host[:port]/path or s3://bucket/prefix.

    No credential is stored: ssh uses your agent and ~/.ssh/config, S3 the AWS variables
    and files. The first remote is the default.
    Example: datmo remote add origin ssh://me@gpu-box/srv/datmo/proj
    """
    from datmo.core.controller import remote as ctl
    from datmo.core.controller.project import open_project

    made = ctl.add(open_project(), name, url, default, endpoint_url)
    note(f"added remote '{made.name}' -> {made.url.text}" + (" (default)" if made.default else ""))


@remote.command(name="ls")
@format_option
def ls_cmd(fmt: str) -> None:
    """List the remotes; * marks the default.

    Example: datmo remote ls
    """
    from datmo.core.controller import remote as ctl
    from datmo.core.controller.project import open_project

    rows: list[dict[str, Any]] = [
        {
            "name": r.name,
            "url": r.url.text,
            "kind": r.url.kind,
            "endpoint_url": r.endpoint_url,
            "default": r.default,
        }
        for r in ctl.ls(open_project())
    ]
    if fmt == "table":
        for row in rows:
            row["name"] = ("* " if row["default"] else "  ") + row["name"]
    echo(render(rows, ["name", "kind", "url", "endpoint_url"], fmt))


@remote.command()
@click.argument("name")
def rm(name: str) -> None:
    """Forget a remote; what it holds stays there.

    Example: datmo remote rm origin
    """
    from datmo.core.controller import remote as ctl
    from datmo.core.controller.project import open_project

    gone = ctl.rm(open_project(), name)
    note(f"removed remote '{gone.name}' ({gone.url.text}); its contents were not touched")


def _split(ctx: Any, words: tuple[str, ...], all_: bool) -> tuple[str | None, tuple[str, ...]]:
    """[NAME] [ID...]: the first word is a remote when one has that name."""
    from datmo.core.controller import remote as ctl

    name = words[0] if words and ctl.is_remote(ctx, words[0]) else None
    ids = words[1:] if name else words
    if all_ and ids:
        raise click.UsageError("give IDs or --all, not both")
    return name, ids


def _counts(added: dict[str, int]) -> str:
    order = ("runs", "snapshots", "environments", "sweeps")
    parts = [f"{added[k]} {k[:-1]}(s)" for k in order if added.get(k)]
    return ", ".join(parts) or "nothing"


@click.command()
@click.argument("words", nargs=-1, metavar="[NAME] [ID...]")
@click.option("--all", "all_", is_flag=True, help="Every snapshot and finished run (the default).")
def push(words: tuple[str, ...], all_: bool) -> None:
    """Send snapshots and runs to a remote: only what it lacks.

    NAME is a remote (default: the default remote); IDs name runs or snapshots (with
    none, or --all: every snapshot and every finished run). A run's snapshots,
    environment, logs and metrics go with it. Runs still RUNNING or QUEUED are not sent.
    Example: datmo push origin 3f2a
    """
    from datmo.core.controller import push as ctl
    from datmo.core.controller.project import open_project

    ctx = open_project()
    name, ids = _split(ctx, words, all_)
    result = ctl.push(ctx, name, ids, progress=note)
    for run in result.unfinished:
        note(f"not pushed: run {run.id[:8]} is {run.status} (only finished runs are pushed)")
    if result.nothing:
        echo(f"nothing to push: remote '{result.remote}' has it all")
        return
    size = ctl._size(result.bytes)
    echo(f"pushed {_counts(result.sent)} to '{result.remote}' ({result.objects} object(s), {size})")


@click.command()
@click.argument("words", nargs=-1, metavar="[NAME] [ID...]")
@click.option("--all", "all_", is_flag=True, help="Everything the remote holds (the default).")
@click.option("--no-files", is_flag=True, help="Leave snapshots' stored files there until used.")
def pull(words: tuple[str, ...], all_: bool, no_files: bool) -> None:
    """Bring snapshots and runs from a remote, with what they need.

    With --no-files the snapshots' stored files (data, models) stay on the remote, and
    a later checkout or rerun fetches what it needs. Pulled runs show where they came
    from in 'datmo ls'.
    Example: datmo pull origin --no-files
    """
    from datmo.core.controller import pull as ctl
    from datmo.core.controller.project import open_project

    ctx = open_project()
    name, ids = _split(ctx, words, all_)
    result = ctl.pull(ctx, name, ids, with_files=not no_files, progress=note)
    for line in result.installed.skipped:
        note(f"not pulled: {line}")
    if not any(result.installed.added.values()):
        if result.installed.objects:  # files of snapshots pulled before with --no-files
            n = result.installed.objects
            echo(f"fetched {n} stored file(s) from '{result.remote}' that earlier pulls left there")
        else:
            echo(f"nothing to pull: up to date with '{result.remote}'")
        return
    files = "" if not no_files else "; stored files stay there until used"
    got = _counts(result.installed.added)
    echo(f"pulled {got} from '{result.remote}' ({result.installed.objects} object(s){files})")


@click.command()
@click.argument("source", metavar="URL|BUNDLE")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--no-files", is_flag=True, help="Leave snapshots' stored files there until used.")
@click.option("--endpoint-url", metavar="URL", help="An S3-compatible store for s3:// URLs.")
def clone(source: str, folder: Path, no_files: bool, endpoint_url: str | None) -> None:
    """Make a new project in FOLDER from a remote (it becomes 'origin') or a bundle file.

    The clone is the same project (same id). Reproduce a run in it with 'datmo rerun ID'.
    Example: datmo clone ssh://me@gpu-box/srv/datmo/proj proj && cd proj && datmo ls
    """
    from datmo.core.controller import clone as ctl

    ctx, done = ctl.clone(source, folder, not no_files, endpoint_url, progress=note)
    for line in done.skipped:
        note(f"not pulled: {line}")
    echo(f"cloned {_counts(done.added)} into {ctx.root}")
    note(
        "the working tree is empty: 'datmo snapshot checkout ID' fills it, 'datmo rerun ID' reruns"
    )
