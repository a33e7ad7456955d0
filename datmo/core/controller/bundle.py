"""`datmo bundle create FILE [ID...|--all]`, `datmo bundle import FILE`, and `datmo clone
FILE DIR`: what a push would send, as one file (for e-mail, a paper's supplement, an
archive). Importing reads and checks the whole bundle before it writes a record;
importing the same bundle twice changes nothing. Nothing in a bundle is ever run.
"""

from __future__ import annotations

from pathlib import Path

from datmo.core.controller import incoming, sharing
from datmo.core.controller import remote as remotes
from datmo.core.entity.base import utcnow
from datmo.core.remote import bundlefile, gitcode
from datmo.core.remote.layout import KINDS, SNAPSHOT_REFS, meta_doc
from datmo.core.storage.fsutil import makedirs
from datmo.core.storage.project import ProjectContext
from datmo.errors import DatmoError


def create(ctx: ProjectContext, dest: Path, ids: tuple[str, ...]) -> sharing.Plan:
    if dest.exists():
        raise DatmoError(f"{dest} exists; remove it or name another file")
    if not dest.parent.is_dir():
        raise DatmoError(f"no folder {dest.parent} to write {dest.name} in")
    sel = sharing.select(ctx, ids)
    plan = sharing.plan(ctx, sel, {})
    if plan.empty():
        raise DatmoError("nothing to bundle: this project has no snapshot or finished run yet")
    info = ctx.info
    scratch = ctx.store.path("tmp")
    makedirs(scratch, ctx.store.owner)
    code = scratch / f"bundle-{info.id[:8]}-{utcnow()[-12:-1].replace(':', '')}.bundle"
    try:
        if plan.refs:
            gitcode.make_bundle(ctx.store.git, plan.refs, code)
        meta = {**meta_doc(info.id, info.name), "created_at": utcnow()}
        meta["records"] = {k: sorted(plan.envelopes[k]) for k in KINDS}
        bundlefile.write(dest, meta, plan.items(), code if plan.refs else None, plan.records())
    finally:
        code.unlink(missing_ok=True)
    return plan


def _complete(ctx: ProjectContext, contents: bundlefile.Contents, path: Path) -> dict[str, str]:
    """Refuse a bundle whose records need what neither it nor this project holds; the
    commits its code bundle holds, by snapshot ref."""
    heads = gitcode.bundle_heads(contents.code) if contents.code else {}
    entities = incoming.parse(contents.envelopes, str(path))
    store, git = ctx.store, ctx.store.git

    def need(kind: str, rid: str | None, by: str) -> None:
        if (
            rid
            and rid not in contents.envelopes[kind]
            and not store.path(kind, f"{rid}.json").is_file()
        ):
            raise bundlefile.DamagedBundle(f"{path} is incomplete: {by} needs {kind} {rid[:8]}")

    def have(digest: str | None, by: str) -> None:
        if digest and not store.objects.has(digest):
            raise bundlefile.DamagedBundle(f"{path} is incomplete: {by} needs object {digest[:12]}")

    for sid, snap in entities["snapshots"].items():
        by = f"snapshot {sid[:8]}"
        need("environments", snap.environment_id, by)
        have(snap.files_id, by)
        have(snap.requirements_id, by)
        for digest in incoming.file_digests(ctx, snap):
            have(digest, by)
        if heads.get(SNAPSHOT_REFS + sid) != snap.code_commit and not git.has_object(
            snap.code_commit
        ):
            raise bundlefile.DamagedBundle(f"{path} is incomplete: {by}'s code is not in it")
    for eid, env in entities["environments"].items():
        for digest in env.files.values():
            have(digest, f"environment {eid[:8]}")
    for rid, run in entities["runs"].items():
        by = f"run {rid[:8]}"
        for sid in (run.before_snapshot_id, run.after_snapshot_id):
            need("snapshots", sid, by)
        need("environments", run.environment_id, by)
        for digest in contents.envelopes["runs"][rid].data.values():
            have(digest, by)
    return heads


def import_(ctx: ProjectContext, path: Path) -> incoming.Installed:
    if not path.is_file():
        raise DatmoError(f"no bundle file {path}")
    scratch = ctx.store.path("tmp")
    makedirs(scratch, ctx.store.owner)
    contents = bundlefile.read(path, ctx.store.objects, scratch)
    try:
        try:
            remotes.check_project(ctx, contents.meta, f"bundle {path.name}")
            _complete(ctx, contents, path)
        except DatmoError as e:
            for digest in contents.added:
                ctx.store.objects.delete(digest)
            if isinstance(e, bundlefile.DamagedBundle):
                raise bundlefile.DamagedBundle(f"{e}; nothing was imported") from None
            raise
        code = contents.code

        def no_fetch(digests: list[str]) -> None:
            raise bundlefile.DamagedBundle(f"{path} lacks object {digests[0][:12]}")

        def fetch_code(wants: dict[str, tuple[str, str | None]]) -> None:
            if code is None:
                raise bundlefile.DamagedBundle(f"{path} holds no code")
            gitcode.fetch(ctx.store.git, str(code), wants, path.name)

        return incoming.install(
            ctx, contents.envelopes, path.name, f"bundle {path.name}", no_fetch, fetch_code
        )
    finally:
        if contents.code is not None:
            contents.code.unlink(missing_ok=True)
