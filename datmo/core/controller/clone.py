"""`datmo clone URL|BUNDLE DIR`: a new project from a remote (which becomes its 'origin')
or from a bundle file (no remote). It is the same project: it keeps the project's id.
A clone that fails leaves nothing behind."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from datmo.core.controller import bundle, incoming, project, pull
from datmo.core.controller import remote as remotes
from datmo.core.remote.layout import Progress
from datmo.core.storage.project import ProjectContext
from datmo.errors import DatmoError, NotFound


def clone(
    source: str,
    folder: Path,
    with_files: bool = True,
    endpoint_url: str | None = None,
    progress: Progress = None,
) -> tuple[ProjectContext, incoming.Installed]:
    from datmo.core.remote import open_transport
    from datmo.core.remote.url import parse

    made = not folder.exists()
    if not made and (not folder.is_dir() or any(folder.iterdir())):
        raise DatmoError(f"{folder} exists and is not an empty folder; clone into a new one")
    if os.path.isfile(source):
        return from_bundle(Path(source).resolve(), folder, made)
    url = parse(source)
    transport = open_transport(url, endpoint_url)
    try:
        meta = transport.read_meta()
        if meta is None:
            raise NotFound(f"no datmo remote at {transport.label}")
        folder.mkdir(parents=True, exist_ok=True)
        try:
            init = project.init(
                folder, meta.get("project_name"), None, project_id=meta["project_id"]
            )
            ctx = init.ctx
            remotes.add(ctx, "origin", url.text, default=True, endpoint_url=endpoint_url)
            done = pull.from_transport(ctx, transport, "origin", (), with_files, progress)
        except BaseException:
            shutil.rmtree(folder if made else folder / ".datmo", ignore_errors=True)
            raise
        return ctx, done
    finally:
        transport.close()


def from_bundle(path: Path, folder: Path, made: bool) -> tuple[ProjectContext, incoming.Installed]:
    """A new project from a bundle: the bundle's project id, and no remote."""
    from datmo.core.remote import bundlefile

    meta = bundlefile.read_meta(path)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        ctx = project.init(
            folder, meta.get("project_name"), None, project_id=meta["project_id"]
        ).ctx
        return ctx, bundle.import_(ctx, path)
    except BaseException:
        shutil.rmtree(folder if made else folder / ".datmo", ignore_errors=True)
        raise
