"""Project settings: how datmo behaves in this project (`datmo settings set run.capture
false`, `datmo settings set slurm.partition gpu`). They live in `.datmo/project.json`,
never in a snapshot or a run's config, and their names have a dot, so none is ever
mistaken for a config key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datmo.core.entity.base import utcnow
from datmo.core.storage.project import ProjectContext
from datmo.core.util.params import parse_value
from datmo.errors import UsageError


@dataclass(frozen=True)
class Setting:
    name: str
    kind: type
    default: Any
    help: str


KNOWN = {
    s.name: s
    for s in [
        Setting("run.capture", bool, True, "read 'key: number' output lines as metrics"),
        Setting("slurm.partition", str, None, "Slurm partition for runs (sbatch --partition)"),
        Setting("slurm.time", str, None, "Slurm time limit, such as 2:00:00 (sbatch --time)"),
        Setting("slurm.memory", str, None, "memory per Slurm job, such as 16g (sbatch --mem)"),
        Setting("slurm.cpus", int, None, "CPUs per Slurm job (sbatch --cpus-per-task)"),
        Setting("slurm.account", str, None, "Slurm account to charge (sbatch --account)"),
        Setting("slurm.qos", str, None, "Slurm quality of service (sbatch --qos)"),
        Setting("slurm.args", str, None, "other sbatch options, as typed: --constraint=a100"),
        Setting("slurm.python", str, None, "the Python that runs datmo on compute nodes"),
    ]
}


def _known(name: str) -> Setting:
    if name not in KNOWN:
        raise UsageError(f"no setting '{name}'; see 'datmo settings ls' ({', '.join(KNOWN)})")
    return KNOWN[name]


def get(ctx: ProjectContext, name: str) -> Any:
    setting = _known(name)
    return ctx.info.settings.get(name, setting.default)


def values(ctx: ProjectContext) -> list[tuple[Setting, Any, bool]]:
    """(setting, its value, whether it was set here) for every known setting."""
    mine = ctx.info.settings
    return [(s, mine.get(s.name, s.default), s.name in mine) for s in KNOWN.values()]


def set_value(ctx: ProjectContext, name: str, text: str) -> Any:
    setting = _known(name)
    value = text if setting.kind is str else parse_value(text)
    if setting.kind is bool and not isinstance(value, bool):
        raise UsageError(f"{name} is true or false, not '{text}'")
    if setting.kind is not bool and not isinstance(value, setting.kind):
        raise UsageError(f"{name} takes a {setting.kind.__name__}, not '{text}'")
    _check(name, value)
    with ctx.store.lock():
        info = ctx.info
        ctx.save_info(info.evolve(settings={**info.settings, name: value}, updated_at=utcnow()))
    return value


def _check(name: str, value: Any) -> None:
    """A value the runs could not use is refused now, not at the next run."""
    if name == "slurm.memory":
        from datmo.core.task.spec import parse_memory

        parse_memory(value)
    elif name == "slurm.cpus" and value < 1:
        raise UsageError("slurm.cpus takes a whole number of CPUs, 1 or more")
    elif name == "slurm.args":
        import shlex

        try:
            shlex.split(value)
        except ValueError as e:
            raise UsageError(f"slurm.args: {e} (quote as a shell would)") from None


def unset(ctx: ProjectContext, name: str) -> None:
    _known(name)
    with ctx.store.lock():
        info = ctx.info
        rest = {k: v for k, v in info.settings.items() if k != name}
        ctx.save_info(info.evolve(settings=rest, updated_at=utcnow()))
