"""`datmo run`, `datmo ls`, `datmo logs`, `datmo stop`, `datmo delete`, `datmo rerun`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from datmo.cli import slurmopts
from datmo.cli.ending import datmo_failure_exit, exit_code
from datmo.cli.output import echo, format_option, note, render

F = Callable[..., Any]


TASK_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--environment", "environment"), {"metavar": "ID", "help": "Environment (default: active)."}),
    (("--gpu",), {"is_flag": True, "help": "Give the task all GPUs."}),
    (("--gpus",), {"metavar": "0,1", "help": "Give the task these GPUs (or 'all')."}),
    (
        ("-p", "--port", "ports"),
        {
            "multiple": True,
            "metavar": "HOST:CONTAINER",
            "help": "Publish a port, on 127.0.0.1 unless IP:HOST:CONTAINER. Repeatable.",
        },
    ),
    (("--memory",), {"metavar": "SIZE", "help": "Memory limit, such as 4g."}),
    (("--cpus",), {"metavar": "N", "help": "CPU limit, such as 2 or 0.5."}),
    (
        ("--data",),
        {
            "multiple": True,
            "metavar": "PATH[>NAME][:rw]",
            "help": "Mount at /data/NAME, read-only unless :rw. Repeatable.",
        },
    ),
    (
        ("-e", "--env", "env"),
        {
            "multiple": True,
            "metavar": "KEY=VALUE",
            "help": "Set a variable in the task (KEY alone passes yours). Repeatable.",
        },
    ),
    (("-d", "--detach"), {"is_flag": True, "help": "Return at once; the run goes on."}),
    (
        ("--executor",),
        {
            "type": click.Choice(["docker", "local", "slurm"]),
            "help": "Run in Docker, as a local process, or on Slurm (default: the project's).",
        },
    ),
]


def task_options(f: F) -> F:
    """Options shared by `datmo run` and the workspaces."""
    for decls, kw in reversed(TASK_OPTIONS):
        f = click.option(*decls, **kw)(f)
    return f


def build_spec(command: str, **kw: Any) -> Any:
    from datmo.core.controller import settings
    from datmo.core.controller.project import open_project
    from datmo.core.controller.tags import checked
    from datmo.core.task import spec as task_spec
    from datmo.core.util.params import parse_value, split_pairs
    from datmo.errors import UsageError

    ctx = open_project()
    typed = split_pairs(kw.get("config", ()), "--config")
    here = os.path.relpath(os.path.realpath(os.getcwd()), os.path.realpath(ctx.root))
    gpus = kw.get("gpus")
    if kw.get("gpu") and gpus:
        raise click.UsageError("use --gpu (all GPUs) or --gpus LIST, not both")
    spec = task_spec.RunSpec(
        command=command,
        executor=kw.get("executor") or ctx.info.default_executor,
        environment=kw.get("environment"),
        gpus="all" if kw.get("gpu") else task_spec.parse_gpus(gpus) if gpus else None,
        ports=[task_spec.parse_port(p) for p in kw.get("ports", ())],
        memory=task_spec.parse_memory(kw["memory"]) if kw.get("memory") else None,
        cpus=task_spec.parse_cpus(kw["cpus"]) if kw.get("cpus") is not None else None,
        data=[task_spec.parse_data(d) for d in kw.get("data", ())],
        env=task_spec.parse_env(kw.get("env", ())),
        config={k: parse_value(v) for k, v in typed.items()},
        config_text=typed,
        config_file=kw.get("config_file"),
        cwd="" if here == "." or here.startswith("..") else Path(here).as_posix(),
        tags=checked(kw.get("tags", ())),
        isolated=bool(kw.get("isolated")),
        keep_workdir=bool(kw.get("keep_workdir")),
        num_gpus=int(kw.get("num_gpus") or 0),
        priority=int(kw.get("priority") or 0),
        retry=int(kw.get("retry") or 0),
        message=kw.get("message"),
        detach=bool(kw.get("detach")),
        interactive=bool(kw.get("interactive")),
        capture=not kw.get("no_capture") and settings.get(ctx, "run.capture") is not False,
    )
    store = os.path.realpath(ctx.store.dir)
    for d in spec.data:
        if (
            store == d.source
            or store.startswith(d.source.rstrip("/") + "/")
            or d.source.startswith(store + "/")
        ):
            raise UsageError(
                f"--data {d.source} would show tasks the project's .datmo store; "
                "mount a folder that does not hold it"
            )
    return ctx, spec


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("command", nargs=-1, required=True)
@task_options
@click.option(
    "-c",
    "--config",
    "config",
    multiple=True,
    metavar="KEY=VALUE",
    help="Run config, typed, over the config file's; {KEY} in the command is its value. "
    "Repeatable.",
)
@click.option(
    "--config-file",
    metavar="FILE",
    help="The project's config file (default: config.json); -c values are written into it.",
)
@click.option("-m", "--message", help="What this run is for.")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Tag the run. Repeatable.")
@click.option("-i", "--interactive", is_flag=True, help="Attach your terminal to the task.")
@click.option(
    "--no-capture", is_flag=True, help="Do not read 'key: number' output lines as metrics."
)
@click.option(
    "--isolated", is_flag=True, help="Work in a copy of its own, not in your working tree."
)
@click.option("--keep-workdir", is_flag=True, help="Keep that copy when the run fails.")
@click.option("--queue", "queued", is_flag=True, help="Stage it for 'datmo queue start'.")
@click.option("--num-gpus", type=click.IntRange(0), default=0, help="GPUs a queue worker gives.")
@click.option("--priority", type=int, default=0, help="With --queue: higher goes first.")
@click.option("--retry", type=click.IntRange(0), default=0, help="Requeues if its worker dies.")
@slurmopts.slurm_options
def run(command: tuple[str, ...], **kw: Any) -> None:
    """Run a task: snapshot before, run the command, snapshot after.

    Quote the command, or put it after --. The task gets the run's config (config.json
    with -c over it) in $DATMO_CONFIG, $DATMO_CONFIG_FILE, datmo.config(), {KEY} in the
    command and the config file itself. Exits with the task's exit code (130 after
    Ctrl-C, 125 when datmo itself fails).

    Example: datmo run -c lr=0.01 "python train.py --lr {lr} --epochs 3"
    """
    from datmo.core.controller import run as runs
    from datmo.core.controller import task

    text = command[0] if len(command) == 1 else " ".join(_quote(c) for c in command)
    on_slurm = slurmopts.given(kw)
    with datmo_failure_exit():
        ctx, spec = build_spec(text, **kw)
        slurmopts.refuse_unless_slurm(spec.executor, on_slurm)
        if spec.executor == "slurm":
            if kw.get("queued"):  # Slurm's queue is the queue
                spec.detach = True
            sys.exit(slurmopts.run(ctx, spec, on_slurm))
        if kw.get("queued"):
            from datmo.core.controller import queue

            staged = queue.stage(ctx, spec, progress=note)
            note(f"run {staged.id[:8]} QUEUED; start a worker with 'datmo queue start'")
            echo(staged.id)
            return
        if spec.num_gpus or spec.priority or spec.retry:
            raise click.UsageError(
                "--num-gpus, --priority and --retry are for queued runs: add --queue (a "
                "worker hands out GPUs), or pick devices now with --gpus 0,1"
            )
        if spec.interactive:
            from datmo.core.controller.interactive import run_interactive

            sys.exit(exit_code(run_interactive(ctx, spec, progress=note), note))
        started = runs.start(ctx, spec, progress=note)
    if spec.detach:
        note(
            f"run {started.id[:8]} started in the background; "
            f"follow it with 'datmo logs -f {started.id[:8]}'"
        )
        echo(started.id)
        return
    note(f"run {started.id[:8]} ({spec.executor}) started")
    final = task.follow(ctx, started, sys.stdout.buffer, on_stop=note)
    sys.exit(exit_code(final, note))


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def run_row(r: Any) -> dict[str, Any]:
    doc: dict[str, Any] = r.to_dict()
    doc.pop("env", None)
    return doc


@click.command(name="ls")
@click.option("--filter", "filter_", metavar="EXPR", help="Such as: acc>0.9 and lr=0.01")
@click.option("--sort", metavar="KEY[:asc]", help="Sort by a metric or config key (descending).")
@click.option("--limit", type=int, help="Show at most this many runs.")
@click.option(
    "--columns", metavar="A,B,...", help="Columns to show, such as id,status,lr,acc (table, csv)."
)
@click.option("--sweep", "sweep_id", metavar="ID", help="Only the runs of this sweep.")
@format_option
def ls(
    filter_: str | None,
    sort: str | None,
    limit: int | None,
    columns: str | None,
    sweep_id: str | None,
    fmt: str,
) -> None:
    """List runs, newest first.

    The table shows the config keys whose values differ among the runs listed, and
    every metric; --format csv has a column for every key, json the whole records.
    Example: datmo ls --filter "acc>0.9" --sort acc --limit 10
    """
    from datmo.cli import listing
    from datmo.core.controller import run as runs
    from datmo.core.controller.project import open_project

    ctx = open_project()
    if sweep_id:
        from datmo.core.controller import sweep

        sweep_id = sweep.get(ctx, sweep_id).id
    found = runs.listing(ctx, filter_, sort, limit, sweep_id)
    for key in found.unknown:
        known = ", ".join(found.known.get("config", []) + found.known.get("metrics", []))
        note(f"warning: no run has '{key}' (config and metric keys: {known or 'none yet'})")
    if fmt == "json":
        echo(render([run_row(r) for r in found.runs], [], "json"))
    else:
        cols = listing.columns(found.runs, columns, table=fmt == "table")
        if fmt == "csv":
            echo(listing.csv_text(found.runs, cols))
        else:
            text, dropped = listing.table(found.runs, cols, listing.terminal_width())
            echo(text)
            hidden = len(listing.varying(found.runs)) < len(
                {k for r in found.runs for k in r.config}
            )
            if dropped:
                note(f"not shown, to fit the terminal: {', '.join(dropped)} (pick with --columns)")
            elif hidden and not columns:
                note("config keys with the same value in every run are not shown (--columns)")
    if found.damaged:
        note(
            f"{found.damaged} run record(s) could not be read and are not listed; run 'datmo fsck'"
        )


@click.command()
@click.argument("run_id")
@click.option("-f", "--follow", is_flag=True, help="Keep printing output until the run ends.")
def logs(run_id: str, follow: bool) -> None:
    """Print a run's output.

    Example: datmo logs -f 3f2a
    """
    from datmo.core.controller import run as runs
    from datmo.core.controller import task
    from datmo.core.controller.project import open_project
    from datmo.core.storage import runs as records

    ctx = open_project()
    r = runs.get(ctx, run_id)
    if follow and not r.finished:
        # Ctrl-C: stop following only. A run on Slurm: what Slurm knows, now and then.
        refresh = lambda now: runs.settled(ctx, [now])[0]  # noqa: E731
        task.follow(ctx, r, sys.stdout.buffer, stop=False, refresh=refresh)
        return
    with open(records.log_path(ctx.store, r.id), "rb") as f:
        while chunk := f.read(1 << 16):
            sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()


@click.command()
@click.argument("run_id", required=False)
@click.option("--all", "stop_all", is_flag=True, help="Stop every running run.")
def stop(run_id: str | None, stop_all: bool) -> None:
    """Stop a running run: its after snapshot is taken and its container removed.

    Example: datmo stop 3f2a, or datmo stop --all
    """
    from datmo.core.controller import run as runs
    from datmo.core.controller.project import open_project

    done = runs.stop(open_project(), run_id, all=stop_all)
    if not done:
        echo("no runs are running")
    for r in done:
        echo(f"run {r.id[:8]} {r.status}")


@click.command()
@click.argument("run_id")
def delete(run_id: str) -> None:
    """Delete a run's record and log (its snapshots stay until 'datmo gc').

    Example: datmo delete 3f2a
    """
    from datmo.core.controller import run as runs
    from datmo.core.controller.project import open_project

    r = runs.delete(open_project(), run_id)
    echo(f"Deleted run {r.id[:8]}")


@click.command()
@click.argument("target", metavar="ID")
@click.argument("tags", nargs=-1, required=True)
@click.option("--untag", is_flag=True, help="Remove these tags instead.")
def tag(target: str, tags: tuple[str, ...], untag: bool) -> None:
    """Tag a run or a snapshot (by id, prefix or label), or --untag it.

    Example: datmo tag 3f2a baseline paper-v1, then datmo ls --filter tag=baseline
    """
    from datmo.core.controller import tags as ctl
    from datmo.core.controller.project import open_project

    add, remove = ((), tags) if untag else (tags, ())
    done = ctl.change(open_project(), target, add, remove)
    kind = "snapshot" if hasattr(done, "code_id") else "run"
    echo(f"{kind} {done.id[:8]}: {', '.join(done.tags) or '(no tags)'}")
