"""Docs that are checked: every command has help with an example and is in docs/cli.md."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from datmo.cli.main import cli as root_group

REPO = Path(__file__).resolve().parents[2]
CLI_DOC = REPO / "docs" / "cli.md"


def all_commands() -> dict[str, click.Command]:
    """'snapshot create' -> command, for every command and group below the root,
    lazy ones included (loaded through list_commands/get_command as click does)."""
    found: dict[str, click.Command] = {}

    def walk(group: click.Group, prefix: tuple[str, ...], parent: click.Context) -> None:
        ctx = click.Context(group, info_name=prefix[-1] if prefix else "datmo", parent=parent)
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            assert cmd is not None, f"{' '.join((*prefix, name))} is listed but cannot be loaded"
            path = (*prefix, name)
            found[" ".join(path)] = cmd
            if isinstance(cmd, click.Group):
                walk(cmd, path, ctx)

    walk(root_group, (), None)  # type: ignore[arg-type]
    return found


COMMANDS = all_commands()


def test_the_walk_finds_the_documented_commands():
    expected = {"init", "status", "cleanup", "version", "snapshot"}
    expected |= {f"snapshot {c}" for c in ("create", "ls", "inspect", "diff", "update")}
    expected |= {"snapshot delete", "snapshot checkout"}
    assert expected <= COMMANDS.keys()


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_command_has_help_with_an_example(path):
    cmd = COMMANDS[path]
    ctx = click.Context(cmd, info_name=f"datmo {path}")
    text = cmd.get_help(ctx)
    assert cmd.help and "Example" in text, f"'datmo {path} --help' shows no example"
    assert f"datmo {path}" in text, f"the example in 'datmo {path} --help' does not use it"


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_command_is_in_docs_cli_md(path):
    assert CLI_DOC.is_file(), "docs/cli.md is missing (README.md links to it)"
    assert f"datmo {path}" in CLI_DOC.read_text(encoding="utf-8")


def test_the_root_help_has_an_example():
    ctx = click.Context(root_group, info_name="datmo")
    assert "datmo snapshot create" in root_group.get_help(ctx)


def test_shell_completion_works_as_docs_cli_md_says(tmp_path):
    import os
    import subprocess
    import sys

    text = CLI_DOC.read_text(encoding="utf-8")
    for shell in ("bash", "zsh", "fish"):
        assert f"_DATMO_COMPLETE={shell}_source datmo" in text
    env = {**os.environ, "_DATMO_COMPLETE": "bash_source", "PYTHONPATH": str(REPO)}
    script = subprocess.run(
        [sys.executable, "-m", "datmo"], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert script.returncode == 0 and "_datmo_completion()" in script.stdout
    env.update(_DATMO_COMPLETE="bash_complete", COMP_WORDS="datmo sn", COMP_CWORD="1")
    words = subprocess.run(
        [sys.executable, "-m", "datmo"], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert "plain,snapshot" in words.stdout.split()
