"""`datmo remote add/ls/rm`: where this project's snapshots and runs are shared.

Remotes live in the project record (`.datmo/project.json`, with its backup copy, so
`fsck --repair` keeps them): a name, a URL and, for S3-compatible stores, an endpoint.
Never a credential: ssh keys and AWS keys stay where ssh and boto3 look for them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from datmo.core.entity.base import utcnow
from datmo.core.remote.url import S3, RemoteURL, check_endpoint, parse
from datmo.core.storage.project import ProjectContext
from datmo.errors import DatmoError, NotFound, UsageError

if TYPE_CHECKING:
    from datmo.core.entity.project import Project
    from datmo.core.remote.layout import Transport

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}\Z")


@dataclass(frozen=True)
class Remote:
    name: str
    url: RemoteURL
    endpoint_url: str | None
    default: bool


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(
            f"'{name}' cannot name a remote; use a letter, then letters, digits, '.', '-' or "
            "'_' (such as 'origin')"
        )
    if len(name) >= 4 and all(c in "0123456789abcdef" for c in name.lower()):
        raise UsageError(f"'{name}' looks like an id; give the remote another name")
    return name


def default_name(info: Project) -> str | None:
    """The marked default, or the only remote when there is just one."""
    if info.default_remote in info.remotes:
        return info.default_remote
    return next(iter(info.remotes)) if len(info.remotes) == 1 else None


def _remote(info: Project, name: str) -> Remote:
    entry: dict[str, Any] = info.remotes[name]
    if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
        raise DatmoError(f"remote '{name}' in project.json is damaged; 'datmo remote rm {name}'")
    return Remote(name, parse(entry["url"]), entry.get("endpoint_url"), default_name(info) == name)


def add(
    ctx: ProjectContext,
    name: str,
    url: str,
    default: bool = False,
    endpoint_url: str | None = None,
) -> Remote:
    _check_name(name)
    parsed = parse(url)
    if endpoint_url is not None:
        if parsed.kind != S3:
            raise UsageError("--endpoint-url is for s3:// remotes only")
        check_endpoint(endpoint_url)
    with ctx.store.lock():
        info = ctx.info
        if name in info.remotes:
            raise DatmoError(f"a remote named '{name}' exists; 'datmo remote rm {name}' first")
        entry = {"url": parsed.text, **({"endpoint_url": endpoint_url} if endpoint_url else {})}
        remotes = {**info.remotes, name: entry}
        chosen = name if default or not info.remotes else info.default_remote
        info = info.evolve(remotes=remotes, default_remote=chosen, updated_at=utcnow())
        ctx.save_info(info)
    return _remote(info, name)


def ls(ctx: ProjectContext) -> list[Remote]:
    info = ctx.info
    return [_remote(info, n) for n in sorted(info.remotes)]


def rm(ctx: ProjectContext, name: str) -> Remote:
    """Forget a remote (what it holds stays there)."""
    with ctx.store.lock():
        info = ctx.info
        if name not in info.remotes:
            raise NotFound(f"no remote '{name}'; see 'datmo remote ls'")
        gone = _remote(info, name)
        rest = {k: v for k, v in info.remotes.items() if k != name}
        chosen = None if info.default_remote == name else info.default_remote
        ctx.save_info(info.evolve(remotes=rest, default_remote=chosen, updated_at=utcnow()))
    return gone


def is_remote(ctx: ProjectContext, word: str) -> bool:
    return word in ctx.info.remotes


def get(ctx: ProjectContext, name: str | None) -> Remote:
    """The remote by name, or the default one."""
    info = ctx.info
    if name is None:
        name = default_name(info)
        if name is None:
            if not info.remotes:
                raise DatmoError(
                    "this project has no remote; add one with 'datmo remote add NAME URL'"
                )
            raise DatmoError(
                f"name the remote ({', '.join(sorted(info.remotes))}), or make one the default "
                "with 'datmo remote add NAME URL --default'"
            )
    if name not in info.remotes:
        raise NotFound(f"no remote '{name}'; see 'datmo remote ls'")
    return _remote(info, name)


def connect(remote: Remote) -> Transport:
    from datmo.core.remote import open_transport

    return open_transport(remote.url, remote.endpoint_url)


def check_project(ctx: ProjectContext, meta: dict[str, Any], where: str) -> None:
    """A remote holds one project: refuse another's."""
    info = ctx.info
    if meta["project_id"] != info.id:
        theirs = meta.get("project_name") or "another project"
        raise DatmoError(
            f"{where} holds the project '{theirs}' ({meta['project_id'][:8]}), not this one "
            f"({info.id[:8]}); a remote holds one project: use another folder, host path or prefix"
        )
