"""`datmo push [NAME] [ID...|--all]`: send snapshots and runs to a remote.

Only what the remote lacks: its records say what it holds (a record there vouches for
everything it needs, see remote/layout.py), and of the objects the new records need only
the missing ones go. Code first (git push, or a git bundle for S3), then objects, then
records, so a push killed half way leaves the remote consistent and the next one
finishes the job. Nothing to push is a success.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datmo.core.controller import remote as remotes
from datmo.core.controller import sharing
from datmo.core.entity.run import Run
from datmo.core.remote.layout import Progress, meta_doc
from datmo.core.storage.fsutil import makedirs
from datmo.core.storage.project import ProjectContext


@dataclass
class PushResult:
    remote: str
    sent: dict[str, int] = field(default_factory=dict)  # kind -> records sent
    objects: int = 0
    bytes: int = 0
    unfinished: list[Run] = field(default_factory=list)

    @property
    def nothing(self) -> bool:
        return not any(self.sent.values())


def push(
    ctx: ProjectContext, name: str | None, ids: tuple[str, ...], progress: Progress = None
) -> PushResult:
    remote = remotes.get(ctx, name)
    transport = remotes.connect(remote)
    try:
        sel = sharing.select(ctx, ids)  # bad ids fail before the remote is touched
        meta = transport.read_meta()
        if meta is None:
            info = ctx.info
            meta = transport.create(meta_doc(info.id, info.name))
        remotes.check_project(ctx, meta, f"remote '{remote.name}' ({transport.label})")
        plan = sharing.plan(ctx, sel, transport.record_ids())
        result = PushResult(remote.name, unfinished=sel.unfinished)
        if plan.empty():
            return result
        items = plan.items(transport.missing_objects(plan.objects))
        if progress and items:
            progress(f"sending {len(items)} object(s), {_size(sum(i.size for i in items))}")
        scratch = ctx.store.path("tmp")
        makedirs(scratch, ctx.store.owner)
        extra, bundle = transport.push_code(ctx.store.git, plan.refs, scratch)
        try:
            if bundle:
                for env in plan.envelopes["snapshots"].values():
                    env.bundle = bundle
            transport.send(items + extra, plan.records(), progress)
        finally:
            for item in extra:
                item.path.unlink(missing_ok=True)
        result.sent = {k: plan.count(k) for k in plan.envelopes}
        result.objects = len(items) + len(extra)
        result.bytes = sum(i.size for i in items + extra)
        return result
    finally:
        transport.close()


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
