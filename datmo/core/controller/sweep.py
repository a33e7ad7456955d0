"""Sweeps: one command over a search space, each point an ordinary queued run.

`datmo sweep "python train.py --lr {lr}" -c lr=0.1,0.01 -c bs=32,64` stages the grid (4
runs) with their sweep's id; a queue worker runs them (`--parallel K` starts one at
once). The tree is captured once for the whole sweep, and each run's before snapshot is
derived from that capture with its own config (controller/staging.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from datmo.core.controller import optimize as tpe
from datmo.core.controller import run as runs
from datmo.core.controller import slurm as on_slurm
from datmo.core.controller import snapshot as snapshots
from datmo.core.controller import space as spaces
from datmo.core.controller import staging
from datmo.core.controller.task import Progress
from datmo.core.entity.base import new_id, utcnow
from datmo.core.entity.run import LOST, QUEUED, STOPPED, SUCCESS, Run
from datmo.core.entity.snapshot import Snapshot
from datmo.core.entity.sweep import Sweep
from datmo.core.storage import runs as records
from datmo.core.storage.fsutil import deferred
from datmo.core.storage.project import ProjectContext
from datmo.core.task.spec import RunSpec
from datmo.core.util.signals import deferred_interrupt
from datmo.errors import UsageError

KIND = "sweeps"
FOLLOW_S = 0.25  # between looks at a sweep on Slurm (one squeue call each)


def plan(
    dims: list[spaces.Dimension], random: int | None, seed: int, yes: bool
) -> list[spaces.Point]:
    """The points to stage: the grid, or `random` draws."""
    if random is not None:
        if random < 1:
            raise UsageError("--random N needs N of 1 or more")
        points = list(spaces.draws(dims, random, seed))
    else:
        n = spaces.size(dims)
        if n > spaces.GRID_LIMIT and not yes:
            raise UsageError(
                f"this grid has {n:,} points (more than {spaces.GRID_LIMIT:,}); pass --yes to "
                "stage them all, or draw some with --random N"
            )
        points = list(spaces.grid(dims))
    return points


def _objective(text: str | None, optimize: str | None) -> str | None:
    if optimize and text and optimize != text:
        raise UsageError(f"--optimize {optimize} and --objective {text} disagree; give one")
    text = optimize or text
    if text is None:
        return None
    metric, _, way = text.rpartition(":")
    if not metric or way not in ("max", "min"):
        flag = "--optimize" if optimize else "--objective"
        raise UsageError(f"{flag} '{text}': write METRIC:max or METRIC:min (acc:max)")
    return text


def create(
    ctx: ProjectContext,
    spec: RunSpec,
    items: tuple[str, ...] | list[str],
    *,
    random: int | None = None,
    seed: int = 0,
    objective: str | None = None,
    optimize: str | None = None,
    trials: int | None = None,
    slots: int = 1,
    yes: bool = False,
    progress: Progress | None = None,
    slurm_given: dict[str, Any] | None = None,
    slurm_throttle: int | None = None,
) -> Sweep:
    """Stage every point of the space as a queued run (a tpe search: its first trials,
    one per slot); the sweep's record."""
    dims = spaces.parse(items)
    if optimize or trials is not None:
        if not optimize or not trials or trials < 1 or random is not None:
            raise UsageError(
                "Bayesian search takes --optimize METRIC:max|min and --trials N (N >= 1), "
                "and no --random"
            )
        tpe.distributions(dims)  # Optuna is there, and takes this space
        points: list[spaces.Point] = []
    else:
        points = plan(dims, random, seed, yes)
    extra: dict[str, Any] = {}
    if spec.executor == "slurm" and optimize and not slurm_throttle:
        raise UsageError(
            "--optimize on Slurm needs --parallel K: datmo asks for each next trial as "
            "runs end, so it follows the sweep"
        )
    if spec.executor == "slurm":  # checked with Slurm before anything is made
        extra["slurm"] = on_slurm.checked(ctx, spec, slurm_given or {}, slurm_throttle)
    sweep_id = new_id()
    base = staging.capture(ctx, f"before sweep {sweep_id[:8]}: {spec.command}"[:200], progress)
    sweep = Sweep(
        id=sweep_id,
        command=spec.command,
        created_at=utcnow(),
        space={d.key: d.describe() for d in dims},
        search=tpe.SEARCH if optimize else "random" if random is not None else "grid",
        random=random or 0,
        trials=trials or 0,
        seed=seed,
        objective=_objective(objective, optimize),
        executor=spec.executor,
        options={**spec.options(), **extra},
        points=[config for config, _ in points],
        base_snapshot_id=base.id,
    )
    save(ctx, sweep)
    if sweep.search == tpe.SEARCH:
        refill(ctx, sweep.id, slots, progress)
        return get(ctx, sweep.id)
    return stage(ctx, sweep, spec, range(len(points)), [t for _, t in points], progress)


def base_of(ctx: ProjectContext, sweep: Sweep, progress: Progress | None = None) -> Snapshot:
    """The tree the sweep's runs start from (a sweep made before it was kept: the tree
    as it is now)."""
    if sweep.base_snapshot_id:
        return snapshots.get(ctx, sweep.base_snapshot_id)
    return staging.capture(ctx, f"before sweep {sweep.id[:8]}: {sweep.command}"[:200], progress)


def stage(
    ctx: ProjectContext,
    sweep: Sweep,
    spec: RunSpec,
    which: range | list[int],
    texts: list[dict[str, str]] | None = None,
    progress: Progress | None = None,
) -> Sweep:
    """Stage the runs of the given points (their index in sweep.points); a sweep on
    Slurm submits them as one job array."""
    base = base_of(ctx, sweep, progress)  # captured once for the whole sweep
    specs = {}
    for i in which:
        config = sweep.points[i]
        typed = texts[i] if texts else {k: _text(v) for k, v in config.items()}
        specs[i] = dataclasses.replace(
            spec, config={**spec.config, **config}, config_text={**spec.config_text, **typed}
        )
    # One flush for all the runs' snapshots, then one for their records, in place of
    # ten fsyncs a run; in that order, so that no record outlives what it names.
    befores: dict[int, tuple[str, float]] = {}
    with deferred():
        for i, point in specs.items():
            started = time.perf_counter()
            made = staging.before_of(ctx, point, base)
            befores[i] = made.id, time.perf_counter() - started
    with deferred():
        staged = [
            runs.prepare(
                ctx,
                point,
                None,
                queued=True,
                before_snapshot_id=befores[i][0],
                sweep_id=sweep.id,
                point=i,
                save=False,
                before_s=befores[i][1],
            )
            for i, point in specs.items()
        ]
        records.save_many(ctx.store, staged)
    if progress and which:
        progress(f"sweep {sweep.id[:8]}: {len(which)} run(s) staged")
    if sweep.executor == "slurm":
        on_slurm.submit_sweep(ctx, sweep, staged, progress)
    return sweep


def refill(
    ctx: ProjectContext, sweep_id: str | None, slots: int, progress: Progress | None = None
) -> int:
    """For each tpe sweep still going (or the one named): tell Optuna the results of its
    ended runs, then ask for and stage enough trials to keep `slots` runs busy. Under
    the project lock. How many runs it staged."""
    staged = 0
    with ctx.store.lock():
        for sweep in [get(ctx, sweep_id)] if sweep_id else ls(ctx):
            if sweep.search != tpe.SEARCH or sweep.stopped_at:
                continue
            found = runs_of(ctx, sweep)
            st = tpe.study(ctx, sweep)
            tpe.tell(ctx, sweep, found, st)
            n = tpe.wanted(sweep, found, slots)
            if not n:
                continue
            points = tpe.ask(sweep, st, n)
            first = len(sweep.points)
            sweep = save(ctx, sweep.evolve(points=[*sweep.points, *(c for c, _ in points)]))
            texts: list[dict[str, str]] = [{}] * first + [t for _, t in points]
            stage(ctx, sweep, spec_of(sweep), range(first, first + n), texts, progress)
            staged += n
    return staged


def follow_slurm(
    ctx: ProjectContext,
    sweep_id: str,
    slots: int,
    on_end: Callable[[Run], None],
    should_stop: Callable[[], bool],
) -> None:
    """Follow a sweep on Slurm to its end: what Slurm and the records say, each run once
    as it ends; a Bayesian search asks for its next trials as runs end (and submits
    them). should_stop: Ctrl-C, say (the sweep is then stopped: its jobs cancelled)."""
    told: set[str] = set()
    while True:
        if should_stop():
            stop(ctx, sweep_id)
        sweep = get(ctx, sweep_id)
        found = runs.settled(ctx, [r for r in runs_of(ctx, sweep) if r is not None])
        for run in found:
            if run.finished and run.id not in told:
                told.add(run.id)
                on_end(run)
        more = refill(ctx, sweep.id, slots) if sweep.search == tpe.SEARCH else 0
        if not more and all(r.finished for r in found):
            return
        time.sleep(FOLLOW_S)


def _text(value: Any) -> str:
    from datmo.core.task.command import value_text

    return value_text(value)


def save(ctx: ProjectContext, sweep: Sweep) -> Sweep:
    with ctx.store.lock(), deferred_interrupt():
        ctx.store.write_entity(KIND, sweep.to_dict())
    return sweep


def get(ctx: ProjectContext, ref: str) -> Sweep:
    return Sweep.from_dict(ctx.store.read_entity(KIND, ctx.store.resolve(KIND, ref)))


def ls(ctx: ProjectContext) -> list[Sweep]:
    store = ctx.store
    found = [Sweep.from_dict(store.read_entity(KIND, i)) for i in store.list_ids(KIND)]
    return sorted(found, key=lambda s: (s.created_at, s.id), reverse=True)


def runs_of(ctx: ProjectContext, sweep: Sweep) -> list[Run | None]:
    """Each point's run as it stands now, the latest one where a point was staged again
    (None: never staged, or deleted)."""
    from datmo.core.task.process import effective

    out: list[Run | None] = [None] * len(sweep.points)
    for run in sorted(records.of_sweep(ctx.store, sweep.id), key=lambda r: r.created_at):
        i = run.queue.get("point")
        if isinstance(i, int) and 0 <= i < len(out):
            out[i] = effective(run)
    return out


def ranked(sweep: Sweep, found: list[Run | None]) -> list[Run]:
    """The sweep's runs, best first by its objective (runs without the metric last)."""
    present = [r for r in found if r is not None]
    goal = sweep.goal
    if goal is None:
        return present
    metric, higher = goal

    def key(r: Run) -> tuple[int, float]:
        v: Any = r.metrics.get(metric)
        if type(v) not in (int, float):
            return (1, 0.0)
        return (0, -float(v) if higher else float(v))

    return sorted(present, key=key)


def best(sweep: Sweep, found: list[Run | None]) -> Run | None:
    done = [r for r in ranked(sweep, found) if r.status == SUCCESS]
    if sweep.goal is None or not done or sweep.goal[0] not in done[0].metrics:
        return None
    return done[0]


def stop(ctx: ProjectContext, ref: str) -> tuple[Sweep, int, int]:
    """Stop a sweep: its staged runs end STOPPED unstarted, its running ones are stopped.
    (sweep, how many were staged, how many were running)."""
    from datmo.core.controller import task

    sweep = get(ctx, ref)
    found = runs_of(ctx, sweep)
    cluster = [r for r in found if r and r.executor == "slurm" and r.slurm.get("job")]
    on_slurm.stop(ctx, [r for r in cluster if not r.finished])  # one scancel for its jobs
    local = [r for r in found if r and r not in cluster]
    staged = runs.stop_queued(ctx, [r.id for r in local if r.status == QUEUED])
    staged += sum(1 for r in cluster if r.status == QUEUED)
    running = [r for r in found if r and not r.finished and r.status != QUEUED]
    for r in running:
        if r not in cluster:
            task.request_stop(ctx, r)
    sweep = save(ctx, sweep.evolve(stopped_at=utcnow()))
    return sweep, staged, len(running)


def missing(ctx: ProjectContext, sweep: Sweep) -> list[int]:
    """The points to stage again on resume: never staged, deleted, stopped or lost. (A
    tpe search stages none again: it asks for new trials in their place.)"""
    if sweep.search == tpe.SEARCH:
        return []
    return [
        i for i, r in enumerate(runs_of(ctx, sweep)) if r is None or r.status in (STOPPED, LOST)
    ]


def spec_of(sweep: Sweep) -> RunSpec:
    """The run options the sweep's runs were staged with, to stage more (resume)."""
    from datmo.core.task.spec import parse_data, parse_port

    o = sweep.options
    return RunSpec(
        command=sweep.command,
        executor=sweep.executor,
        gpus=o.get("gpus"),
        ports=[parse_port(p) for p in o.get("ports", [])],
        memory=o.get("memory"),
        cpus=o.get("cpus"),
        data=[parse_data(f"{s}>{n}" + (":rw" if w else "")) for s, n, w in o.get("data", [])],
        capture=o.get("capture", True),
        cwd=str(o.get("cwd") or ""),
        config_file=o.get("config_file"),
        keep_workdir=bool(o.get("keep_workdir")),
        num_gpus=int(o.get("num_gpus") or 0),
    )
