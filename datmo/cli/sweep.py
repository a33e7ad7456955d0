"""`datmo sweep COMMAND -c KEY=VALUES...` and `datmo sweep ls/show/stop/resume`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

from datmo.cli import slurmopts
from datmo.cli.ending import datmo_failure_exit
from datmo.cli.output import echo, format_option, note, render
from datmo.cli.run import build_spec, task_options


class SweepGroup(click.Group):
    """`datmo sweep COMMAND ...` is `datmo sweep start COMMAND ...`; the other words of
    the group (ls, show, stop, resume) are its subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["start", *args]
        return super().parse_args(ctx, args)


@click.group(cls=SweepGroup)
def sweep() -> None:
    """Run one command over a search space: each point an ordinary queued run.

    Example: datmo sweep "python train.py --lr {lr}" -c lr=0.1,0.01 -c bs=32,64 --parallel 2
    """


@sweep.command()
@click.argument("command", nargs=-1, required=True)
@task_options
@click.option(
    "-c",
    "--config",
    "config",
    multiple=True,
    metavar="KEY=VALUES",
    help="Values to try: 0.1,0.01; [64,32],[128]; range(1,10,2); loguniform(1e-5,1e-1).",
)
@click.option("--config-file", metavar="FILE", help="The project's config file (config.json).")
@click.option("--random", type=int, metavar="N", help="Draw N points instead of the grid.")
@click.option("--seed", type=int, default=0, show_default=True, help="For --random.")
@click.option("--objective", metavar="METRIC:max|min", help="Rank the runs by this metric.")
@click.option(
    "--optimize",
    metavar="METRIC:max|min",
    help="Bayesian search (Optuna's TPE) for this metric's best; with --trials.",
)
@click.option("--trials", type=int, metavar="N", help="How many runs --optimize may try.")
@click.option("--parallel", type=click.IntRange(1), metavar="K", help="Run K at a time, now.")
@click.option("--num-gpus", type=click.IntRange(0), default=0, help="GPUs each run gets.")
@click.option("--yes", is_flag=True, help="Stage a grid of more than 1,000 points.")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Tag every run. Repeatable.")
@click.option("-m", "--message", help="What this sweep is for (each run's message).")
@slurmopts.slurm_options
def start(command: tuple[str, ...], **kw: Any) -> None:
    """Stage a run for every point of the space (also: datmo sweep COMMAND ...).

    In sweep, commas at the top level of a -c value separate the values to try;
    --random N draws N points, --optimize METRIC:max --trials N searches with Optuna. With
    --parallel K a worker runs them at once, K at a time, and the sweep exits 0 when
    every run succeeded, 1 when one failed, 130 after Ctrl-C (which stops its runs);
    without it they wait for 'datmo queue start' (-d: a worker in the background).
    Example: datmo sweep start "python train.py --lr {lr}" -c lr=0.1,0.01 --parallel 2
    """
    from datmo.core.controller import sweep as ctl

    text = " ".join(command) if len(command) > 1 else command[0]
    items = kw.pop("config")
    on_slurm = slurmopts.given(kw)
    with datmo_failure_exit():
        ctx, spec = build_spec(text, config=(), **kw)
        slurmopts.refuse_unless_slurm(spec.executor, on_slurm)
        made = ctl.create(
            ctx,
            spec,
            items,
            random=kw.get("random"),
            seed=kw.get("seed") or 0,
            objective=kw.get("objective"),
            optimize=kw.get("optimize"),
            trials=kw.get("trials"),
            slots=kw.get("parallel") or 1,
            yes=bool(kw.get("yes")),
            progress=note,
            slurm_given=on_slurm,
            slurm_throttle=kw.get("parallel"),
        )
    echo(made.id)
    if made.executor == "slurm":
        if kw.get("parallel") and not kw.get("detach"):
            sys.exit(_follow_slurm(ctx, made, kw["parallel"]))
        note(f"Slurm runs them; follow with 'datmo sweep show {made.id[:8]}' or 'datmo ls'")
        return
    if kw.get("detach"):
        _background(ctx, made, kw.get("parallel") or 1, kw.get("gpus"))
        return
    if kw.get("parallel"):
        sys.exit(_follow(ctx, made, kw["parallel"], kw.get("gpus")))
    note(
        f"start them with 'datmo queue start' (or 'datmo sweep resume {made.id[:8]} --parallel K')"
    )


def _background(ctx: Any, made: Any, jobs: int, gpus: str | None) -> None:
    import subprocess

    args = [sys.executable, "-m", "datmo", "queue", "start", "-j", str(jobs)]
    if gpus:
        args += ["--gpus", gpus]
    subprocess.Popen(
        args,
        cwd=ctx.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    note(
        f"a worker runs sweep {made.id[:8]} in the background; see 'datmo sweep show {made.id[:8]}'"
    )


def _follow(ctx: Any, made: Any, jobs: int, gpus: str | None) -> int:
    """Run the sweep's runs now with a worker of its own, a line as each one ends, then
    the table ranked by the objective."""
    from datmo.core.controller import sweep as ctl
    from datmo.core.controller import worker

    gpu_pool = worker.gpu_pool(gpus)
    w = worker.Worker(ctx, jobs, gpu_pool, sweep_id=made.id, on_end=_ended(made))
    stopped = [""]
    while True:
        try:
            code = w.run(lambda: stopped[0])
            break
        except KeyboardInterrupt:
            note("stopping the sweep's runs (each is recorded STOPPED)...")
            ctl.stop(ctx, made.id)
            stopped[0] = "now"
    return _summary(ctx, made, 130 if stopped[0] else code)


def _ended(made: Any) -> Callable[[Any], None]:
    goal = made.goal

    def ended(run: Any) -> None:
        shown = " ".join(
            f"{k}={json.dumps(v)}" for k, v in sorted(run.config.items()) if k in made.space
        )
        score = f" {goal[0]}={run.metrics.get(goal[0])}" if goal else ""
        note(f"run {run.id[:8]} {run.status} {shown}{score}")

    return ended


def _follow_slurm(ctx: Any, made: Any, slots: int) -> int:
    """Follow a sweep on Slurm (K at a time: its array's throttle) to its end."""
    from datmo.core.controller import sweep as ctl

    stopped = [False]
    while True:
        try:
            ctl.follow_slurm(ctx, made.id, slots, _ended(made), lambda: stopped[0])
            break
        except KeyboardInterrupt:
            note("stopping the sweep's runs: cancelling its Slurm jobs...")
            stopped[0] = True
    return _summary(ctx, made, 130 if stopped[0] else 0)


def _summary(ctx: Any, made: Any, code: int) -> int:
    """The runs ranked by the objective, the best one; the exit code."""
    from datmo.core.controller import sweep as ctl

    goal = made.goal
    made = ctl.get(ctx, made.id)  # a Bayesian search added its trials meanwhile
    found = ctl.runs_of(ctx, made)
    _table(made, found, "table")
    winner = ctl.best(made, found)
    if winner is not None:
        value = winner.metrics[goal[0]]
        note(f"best: run {winner.id[:8]} {goal[0]}={value} {json.dumps(winner.config)}")
    if code == 130:
        return 130
    if made.search == "tpe":  # a trial whose run was taken out of the queue is no failure
        found = [r for r in found if r is not None]
    return 0 if all(r is not None and r.status == "SUCCESS" for r in found) else 1


def _table(made: Any, found: list[Any], fmt: str) -> None:
    from datmo.core.controller import sweep as ctl

    rows = []
    goal = made.goal
    for r in ctl.ranked(made, found):
        row: dict[str, Any] = {"run": r.id if fmt != "table" else r.id[:8], "status": r.status}
        row.update({k: r.config.get(k) for k in made.space})
        if goal:
            row[goal[0]] = r.metrics.get(goal[0])
        rows.append(row)
    cols = ["run", "status", *made.space, *([goal[0]] if goal else [])]
    echo(render(rows, cols, fmt))


@sweep.command(name="ls")
@format_option
def ls_cmd(fmt: str) -> None:
    """Sweeps, newest first, with how their runs stand.

    Example: datmo sweep ls
    """
    from datmo.core.controller import sweep as ctl
    from datmo.core.controller.project import open_project

    ctx = open_project()
    rows = []
    for s in ctl.ls(ctx):
        found = ctl.runs_of(ctx, s)
        counts: dict[str, int] = {}
        for r in found:
            status = r.status if r else "missing"
            counts[status] = counts.get(status, 0) + 1
        rows.append(
            {
                "id": s.id[:8] if fmt == "table" else s.id,
                "command": s.command,
                "search": f"{s.search} ({len(s.points)})",
                "space": ", ".join(f"{k}={v}" for k, v in s.space.items()),
                "runs": ", ".join(f"{n} {k}" for k, n in sorted(counts.items())),
                "created_at": s.created_at[:19].replace("T", " ")
                if fmt == "table"
                else s.created_at,
            }
        )
    echo(render(rows, ["id", "command", "search", "space", "runs", "created_at"], fmt))


@sweep.command()
@click.argument("sweep_id")
@format_option
def show(sweep_id: str, fmt: str) -> None:
    """A sweep's runs, best first by its objective.

    Example: datmo sweep show 3f2a --format json
    """
    from datmo.core.controller import sweep as ctl
    from datmo.core.controller.project import open_project

    ctx = open_project()
    made = ctl.get(ctx, sweep_id)
    found = ctl.runs_of(ctx, made)
    _table(made, found, fmt)
    winner = ctl.best(made, found)
    if winner is not None and fmt == "table":
        note(f"best: run {winner.id[:8]}")


@sweep.command(name="stop")
@click.argument("sweep_id")
def stop_cmd(sweep_id: str) -> None:
    """Stop a sweep: its staged runs end STOPPED, its running ones are stopped.

    Example: datmo sweep stop 3f2a
    """
    from datmo.core.controller import sweep as ctl
    from datmo.core.controller.project import open_project

    made, staged, running = ctl.stop(open_project(), sweep_id)
    echo(f"sweep {made.id[:8]}: {staged} staged run(s) stopped, {running} running asked to stop")


@sweep.command()
@click.argument("sweep_id")
@click.option("--parallel", type=click.IntRange(1), metavar="K", help="Run K at a time, now.")
@click.option("--gpus", metavar="0,1", help="GPUs to hand out.")
def resume(sweep_id: str, parallel: int | None, gpus: str | None) -> None:
    """Stage again the points a stop or a crash left without a result.

    Example: datmo sweep resume 3f2a --parallel 2
    """
    from datmo.core.controller import sweep as ctl
    from datmo.core.controller.project import open_project

    ctx = open_project()
    with datmo_failure_exit():
        made = ctl.get(ctx, sweep_id)
        which = ctl.missing(ctx, made)
        made = ctl.save(ctx, made.evolve(stopped_at=None))
        if made.search == "tpe":
            if not ctl.refill(ctx, made.id, parallel or 1, note):
                note(f"sweep {made.id[:8]}: no trial left to ask for")
        elif which:
            ctl.stage(ctx, made, ctl.spec_of(made), which, progress=note)
        else:
            note(f"sweep {made.id[:8]}: every point has its run")
    if parallel:
        sys.exit(_follow(ctx, made, parallel, gpus))
