"""The Slurm options of `datmo run` and `datmo sweep`, and how a run on Slurm is
followed from the command line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from datmo.cli.ending import datmo_failure_exit, exit_code
from datmo.cli.output import echo, note

F = TypeVar("F", bound=Callable[..., Any])

SLURM_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--partition",), {"metavar": "NAME", "help": "Slurm: the partition (sbatch --partition)."}),
    (("--time",), {"metavar": "LIMIT", "help": "Slurm: the time limit, such as 2:00:00."}),
    (("--account",), {"metavar": "NAME", "help": "Slurm: the account to charge."}),
    (("--qos",), {"metavar": "NAME", "help": "Slurm: the quality of service."}),
    (
        ("--slurm-arg", "slurm_args"),
        {
            "multiple": True,
            "metavar": "ARG",
            "help": "Slurm: another sbatch option, as typed (--constraint=a100). Repeatable.",
        },
    ),
]
NAMES = ("partition", "time", "account", "qos", "slurm_args")


def slurm_options(f: F) -> F:
    for decls, kw in reversed(SLURM_OPTIONS):
        f = click.option(*decls, **kw)(f)
    return f


def given(kw: dict[str, Any]) -> dict[str, Any]:
    """The Slurm options typed, popped from kw (build_spec does not know them)."""
    got = {name: kw.pop(name, None) for name in NAMES}
    got["extra"] = tuple(got.pop("slurm_args") or ())
    return got


def refuse_unless_slurm(executor: str, got: dict[str, Any]) -> None:
    typed = [f"--{k.replace('_', '-')}" for k, v in got.items() if v not in (None, ())]
    if typed and executor != "slurm":
        shown = ", ".join("--slurm-arg" if t == "--extra" else t for t in typed)
        raise click.UsageError(f"{shown} are for runs on Slurm: add --executor slurm")


def run(ctx: Any, spec: Any, got: dict[str, Any]) -> int:
    """`datmo run --executor slurm`: submitted, then followed (-d: its id at once).
    Ctrl-C while following stops it: its job is cancelled, or its supervisor stops the
    task and takes the after snapshot."""
    from datmo.core.controller import run as runs
    from datmo.core.controller import slurm, task

    with datmo_failure_exit():
        if spec.interactive:
            raise click.UsageError("-i needs your terminal: a Slurm job runs on another node")
        options = slurm.job_options(ctx, spec, got)
        staged = runs.submit_to_slurm(ctx, spec, options, note)
    job = staged.slurm.get("job", "?")
    if spec.detach:
        note(f"run {staged.id[:8]} QUEUED as Slurm job {job}; follow it with 'datmo logs -f'")
        echo(staged.id)
        return 0
    note(f"run {staged.id[:8]} QUEUED as Slurm job {job}; Ctrl-C cancels it")
    final = task.follow(
        ctx,
        staged,
        sys.stdout.buffer,
        on_stop=note,
        refresh=lambda r: runs.settled(ctx, [r])[0],
        stopper=lambda r: slurm.stop(ctx, [r]),
    )
    return exit_code(final, note)
