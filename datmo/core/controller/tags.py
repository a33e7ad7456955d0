"""Tags on runs and snapshots: `--tag` when made, `datmo tag ID TAG...` later, shown in
listings and found by `datmo ls --filter tag=NAME`."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from datmo.core.entity.run import Run
from datmo.core.storage import runs as records
from datmo.core.storage.project import ProjectContext
from datmo.core.util.signals import deferred_interrupt
from datmo.errors import UsageError

_TAG = re.compile(r"[A-Za-z0-9][\w.\-/+@]{0,63}\Z")


def checked(tags: Iterable[str]) -> list[str]:
    """Tags as given, once each, refused unless each is a short word."""
    out = []
    for tag in tags:
        if not _TAG.match(tag):
            raise UsageError(
                f"'{tag}' is not a tag: use letters, digits and . _ - / + @ (up to 64), "
                "starting with a letter or digit"
            )
        out.append(tag)
    return list(dict.fromkeys(out))


def change(ctx: ProjectContext, ref: str, add: Iterable[str], remove: Iterable[str]) -> Any:
    """Add and remove tags of a run (by id) or snapshot (by any of its names)."""
    from datmo.core.controller import names
    from datmo.core.controller.snapshot import KIND

    plus, minus = checked(add), checked(remove)
    store = ctx.store
    with store.lock(), deferred_interrupt():
        target = names.run_or_snapshot(ctx, ref)
        tags = [t for t in [*target.tags, *plus] if t not in minus]
        tags = list(dict.fromkeys(tags))
        if isinstance(target, Run):
            return records.update(store, target.id, tags=tags)
        target = target.evolve(tags=tags)
        store.write_entity(KIND, target.to_dict())
        return target
