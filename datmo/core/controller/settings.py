"""Project settings: how datmo behaves in this project (`datmo settings set run.capture
false`). They live in `.datmo/project.json`, never in a snapshot or a run's config, and
their names have a dot, so none is ever mistaken for a config key."""

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
    value = parse_value(text)
    if setting.kind is bool and not isinstance(value, bool):
        raise UsageError(f"{name} is true or false, not '{text}'")
    if setting.kind is not bool and not isinstance(value, setting.kind):
        raise UsageError(f"{name} takes a {setting.kind.__name__}, not '{text}'")
    with ctx.store.lock():
        info = ctx.info
        ctx.save_info(info.evolve(settings={**info.settings, name: value}, updated_at=utcnow()))
    return value


def unset(ctx: ProjectContext, name: str) -> None:
    _known(name)
    with ctx.store.lock():
        info = ctx.info
        rest = {k: v for k, v in info.settings.items() if k != name}
        ctx.save_info(info.evolve(settings=rest, updated_at=utcnow()))
