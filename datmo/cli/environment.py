"""`datmo environment ...`: thin commands over the environment controller."""

from __future__ import annotations

from typing import Any

import click

from datmo.cli.output import echo, format_option, note, render


def _image_cell(state: bool | None) -> str:
    return "?" if state is None else "yes" if state else "no"


@click.group()
def environment() -> None:
    """Define, list and build the environments code runs in.

    Example: datmo environment setup python
    """


@environment.command()
@click.argument("name", required=False)
@click.option("--list", "show_list", is_flag=True, help="List the built-in definitions.")
def setup(name: str | None, show_list: bool) -> None:
    """Make a built-in definition the project's active environment (nothing is built yet).

    Example: datmo environment setup pytorch, or datmo environment setup --list
    """
    from datmo.core.controller import environment as ctl
    from datmo.errors import UsageError

    if show_list or name is None:
        if not show_list:
            raise UsageError("give a NAME, or --list to see them")
        for builtin, description in ctl.builtins():
            echo(f"{builtin:<16}{description}")
        return
    from datmo.core.controller import image
    from datmo.core.controller.project import open_project

    ctx = open_project()
    env = ctl.setup(ctx, name)
    note(f"Active environment: {env.name} ({env.id[:8]})")
    missing = image.missing_bases(ctx, env)
    if missing:
        note(
            f"its base image {missing[0]} is not on this machine: the first Docker run pulls "
            "it, which needs the network (offline: --executor local, or a Dockerfile FROM a "
            "local image)"
        )
    echo(env.id)


@environment.command()
@click.option(
    "--paths",
    multiple=True,
    metavar="SRC[>DEST]",
    help="The Dockerfile and the files it needs, named relative to the Dockerfile's folder "
    "(or DEST). Repeatable. Default: the Dockerfile in the project root.",
)
@click.option("--name", help="A name to show in 'datmo environment ls'.")
@click.option("--description", default="", help="What it is for.")
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE", help="Repeatable.")
def create(
    paths: tuple[str, ...], name: str | None, description: str, build_args: tuple[str, ...]
) -> None:
    """Define an environment from your Dockerfile and files; print its id.

    The same files (and build args) always give the same id.

    Example: datmo environment create --paths docker/Dockerfile --paths docker/requirements.txt
    """
    from datmo.core.controller import environment as ctl
    from datmo.core.controller.project import open_project
    from datmo.errors import UsageError

    args: dict[str, str] = {}
    for item in build_args:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--build-arg expects KEY=VALUE, got '{item}'")
        args[key.strip()] = value
    result = ctl.create(open_project(), paths, name, description, args)
    if result.skipped:
        note("not included: " + ", ".join(f"{src} ({why})" for src, why in result.skipped))
    if not result.created:
        note(f"already defined as '{result.environment.name}'; kept as is")
    echo(result.environment.id)


@environment.command(name="ls")
@format_option
def ls_cmd(fmt: str) -> None:
    """List environments, oldest first; * marks the one runs and snapshots use now.

    That is the active one ('datmo environment set'), else the project's Dockerfile,
    else the built-in python environment.
    Example: datmo environment ls --format json
    """
    from datmo.core.controller import environment as ctl
    from datmo.core.controller import image
    from datmo.core.controller.project import open_project

    ctx = open_project()
    envs = ctl.ls(ctx)
    active = ctl.in_use_id(ctx)
    images = image.image_states(envs) if envs else {}
    rows: list[dict[str, Any]] = [
        {
            "id": e.id,
            "active": e.id == active,
            "name": e.name,
            "source": e.source,
            "created_at": e.created_at,
            "image": None if images is None else images.get(e.id, False),
            "description": e.description,
            "files": sorted(e.files),
            "build_args": e.build_args,
        }
        for e in envs
    ]
    cols = ["id", "name", "source", "created_at", "image", "description"]
    if fmt == "table":
        for r in rows:
            r["id"] = ("* " if r["active"] else "  ") + r["id"][:8]
            r["created_at"] = r["created_at"][:19].replace("T", " ")
            r["image"] = _image_cell(r["image"])
    elif fmt == "csv":
        cols.insert(1, "active")
    echo(render(rows, cols, fmt))


@environment.command(name="set")
@click.argument("env_id")
def set_cmd(env_id: str) -> None:
    """Make an environment the active one: later snapshots and runs use it.

    Example: datmo environment set 3f2a
    """
    from datmo.core.controller import environment as ctl
    from datmo.core.controller.project import open_project

    env = ctl.set_active(open_project(), env_id)
    note(f"Active environment: {env.name} ({env.id[:8]})")
    echo(env.id)


@environment.command()
@click.argument("env_id")
@click.option("--name", help="New name.")
@click.option("--description", help="New description.")
def update(env_id: str, name: str | None, description: str | None) -> None:
    """Rename an environment or change its description (its id stays).

    Example: datmo environment update 3f2a --name gpu --description "CUDA 12.8"
    """
    from datmo.core.controller import environment as ctl
    from datmo.core.controller.project import open_project

    echo(ctl.update(open_project(), env_id, name, description).id)


@environment.command()
@click.argument("env_id")
@click.option("--force", is_flag=True, help="Delete even the active one, or one snapshots use.")
def delete(env_id: str, force: bool) -> None:
    """Delete an environment and its images.

    Example: datmo environment delete 3f2a
    """
    from datmo.core.controller import environment as ctl
    from datmo.core.controller import image
    from datmo.core.controller.project import open_project

    result = ctl.delete(open_project(), env_id, force)
    env = result.environment
    if result.images_removed is None:
        tag = image.image_tag(env.id)
        note(f"no Docker engine answered; its image {tag}, if built, is still there")
    images = f"{result.images_removed or 0} image(s) removed"
    if result.kept_for:
        echo(
            f"Deleted environment {env.id[:8]}'s name and image ({images}); its definition is "
            f"kept for {result.kept_for}, and 'datmo gc' frees it once nothing uses it"
        )
    else:
        echo(f"Deleted environment {env.id[:8]} ({images})")


@environment.command()
@click.argument("env_id", required=False)
@click.option("--no-cache", is_flag=True, help="Rebuild every step, even when the image exists.")
def build(env_id: str | None, no_cache: bool) -> None:
    """Build an environment's image (default: the one in use) unless it is built already.

    Build output goes to stderr as it comes; the image id to stdout.

    Example: datmo environment build 3f2a --no-cache
    """
    from datmo.core.controller import image
    from datmo.core.controller.project import open_project

    result = image.build(open_project(), env_id, progress=note, no_cache=no_cache)
    state = "built" if result.built else "up to date"
    note(f"Environment {result.environment.id[:8]} {state}: {result.tag}")
    echo(result.image_id)
