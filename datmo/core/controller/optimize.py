"""Bayesian search for sweeps: `datmo sweep ... --optimize METRIC:max|min --trials N`.

Optuna's TPE sampler through its ask-and-tell interface. The study lives in Optuna's
journal file beside the sweep's record, so workers in other terminals share one study
with no database server. Every trial is an ordinary datmo run (its point in the sweep is
the trial's number): a worker with a free slot asks the study for the next trial and
stages its run (refill), and tells the study a run's result once the run has ended.
Both happen under the project lock, so two workers never ask past --trials nor tell one
trial twice. Optuna is optional: `pip install 'datmo[optuna]'`.
"""

from __future__ import annotations

import math
from typing import Any

from datmo.core.controller import space as spaces
from datmo.core.entity.run import LOST, QUEUED, STOPPED, SUCCESS, Run
from datmo.core.entity.sweep import Sweep
from datmo.core.storage.fsutil import chown
from datmo.core.storage.project import ProjectContext
from datmo.errors import UsageError

SEARCH = "tpe"


def optuna() -> Any:
    """The optuna module, or a one-line error saying how to get it."""
    try:
        import optuna as found
    except ImportError:
        raise UsageError(
            "--optimize needs Optuna, which is not installed: pip install 'datmo[optuna]'"
        ) from None
    found.logging.set_verbosity(found.logging.WARNING)
    return found


def distributions(dims: list[spaces.Dimension]) -> dict[str, Any]:
    """Optuna's distribution for each dimension. A list is a categorical over the values
    as typed (Optuna's choices must be plain scalars; a value may be a list)."""
    d = optuna().distributions
    out: dict[str, Any] = {}
    for dim in dims:
        if dim.kind == "uniform":
            out[dim.key] = d.FloatDistribution(dim.low, dim.high)
        elif dim.kind == "loguniform":
            out[dim.key] = d.FloatDistribution(dim.low, dim.high, log=True)
        elif dim.kind == "int":
            out[dim.key] = d.IntDistribution(math.ceil(dim.low), math.floor(dim.high))
        else:
            out[dim.key] = d.CategoricalDistribution(dim.texts)
    return out


def study(ctx: ProjectContext, sweep: Sweep) -> Any:
    """The sweep's study, made on first use."""
    opt = optuna()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = ctx.store.path("sweeps", f"{sweep.id}.optuna")
    storage = JournalStorage(JournalFileBackend(str(path)))
    goal = sweep.goal
    assert goal is not None, "an optimizing sweep has an objective"
    found = opt.create_study(
        study_name=sweep.id,
        storage=storage,
        direction="maximize" if goal[1] else "minimize",
        load_if_exists=True,
    )
    chown(path, ctx.store.owner)  # Optuna made the file: it belongs to the project's owner
    return found


def sampler(sweep: Sweep, number: int) -> Any:
    """The sampler for trial `number`. A process asks with a sampler of its own, so its
    seed is derived from the sweep's seed and the trial's number: the same seed and the
    same results give the same trials, and no two trials draw the same random start.
    constant_liar: trials still running count as having an average result, so parallel
    workers do not all ask for one point. TPE starts from random points (a third of the
    trials, at most Optuna's default of 10)."""
    return optuna().samplers.TPESampler(
        seed=sweep.seed * 1_000_003 + number,
        constant_liar=True,
        n_startup_trials=max(1, min(10, sweep.trials // 3)),
    )


def point_of(trial: Any, dims: list[spaces.Dimension]) -> spaces.Point:
    """A trial's config, and the text of each value (for placeholders)."""
    config: dict[str, Any] = {}
    texts: dict[str, str] = {}
    for dim in dims:
        chosen = trial.params[dim.key]
        if dim.kind == "list":
            i = dim.texts.index(chosen)
            config[dim.key], texts[dim.key] = dim.values[i], dim.texts[i]
        else:
            config[dim.key], texts[dim.key] = chosen, repr(chosen)
    return config, texts


def tell(ctx: ProjectContext, sweep: Sweep, found: list[Run | None], st: Any) -> int:
    """Tell the study the result of each ended run it is still waiting for; how many.
    A run that failed, stopped or ended without the objective's metric is a failed trial,
    and so is a trial with no run (deleted, or asked by a process that died before it
    staged the run: this runs under the project lock, so no staging is under way)."""
    opt = optuna()
    state = opt.trial.TrialState
    goal = sweep.goal
    assert goal is not None
    told = 0
    for trial in st.get_trials(deepcopy=False, states=(state.RUNNING,)):
        run = found[trial.number] if trial.number < len(found) else None
        if run is not None and not run.finished:
            continue
        value: Any = run.metrics.get(goal[0]) if run is not None else None
        if run is not None and run.status == SUCCESS and _finite(value):
            st.tell(trial.number, float(value))
        else:
            st.tell(trial.number, state=state.FAIL)
        told += 1
    return told


def _finite(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def ask(sweep: Sweep, st: Any, n: int) -> list[spaces.Point]:
    """n new trials' points."""
    dims = spaces.parse([f"{k}={v}" for k, v in sweep.space.items()])
    dists = distributions(dims)
    points = []
    for _ in range(n):
        st.sampler = sampler(sweep, len(st.get_trials(deepcopy=False)))
        points.append(point_of(st.ask(dists), dims))
    return points


def wanted(sweep: Sweep, found: list[Run | None], slots: int) -> int:
    """How many trials to ask for now: enough to keep `slots` runs staged or running,
    never past --trials (a run stopped or lost does not use up a trial: resume asks for
    another in its place)."""
    present = [r for r in found if r is not None]
    used = sum(1 for r in present if r.status not in (STOPPED, LOST))
    if any(r.status == QUEUED for r in present):
        return 0  # the next one waits for a slot already
    active = sum(1 for r in present if not r.finished)
    return max(0, min(sweep.trials - used, slots - active))
