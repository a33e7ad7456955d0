"""Environments: the definition (Dockerfile and its files) that code runs in, and its image.

A definition's id is a hash of its files (line endings normalised) and build
args, so the same Dockerfile gives the same id on any machine. The files are
kept in the object store so any snapshot's environment can be rebuilt later;
building its image is controller/image.py.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datmo import templates
from datmo.core.entity.base import utcnow
from datmo.core.entity.environment import BUILTIN_PREFIX, Environment
from datmo.core.storage.project import ProjectContext
from datmo.core.util.signals import deferred_interrupt
from datmo.errors import AmbiguousId, CorruptStore, DatmoError, NotFound, UsageError

if TYPE_CHECKING:
    from datmo.core.tree.unchanged import Watch

KIND = "environments"


def _engine() -> Any:
    """The Docker engine's client module, imported on first use (snapshots seldom need it)."""
    from datmo.core.executor import engine

    return engine


DEFAULT_TEMPLATE = "python"
# No file name holds a NUL, so this entry in the hashed mapping cannot collide with a file.
_BUILD_ARGS_KEY = "\0build-args"
_FULL_ID = re.compile(r"[0-9a-f]{64}\Z")


# -- built-in definitions (datmo/templates) ----------------------------------------


def builtins() -> list[tuple[str, str]]:
    return templates.available()  # (name, one-line description), by name


# -- identity and records -----------------------------------------------------------


def normalise(data: bytes) -> bytes:
    """Text gets LF line endings (as the id does); content with a NUL byte is binary."""
    return data if b"\0" in data else data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def environment_id(files: Mapping[str, bytes], build_args: Mapping[str, str] | None = None) -> str:
    from datmo.core.tree.envinfo import definition_id

    hashed = dict(files)
    if build_args:
        hashed[_BUILD_ARGS_KEY] = json.dumps(dict(build_args), sort_keys=True).encode()
    return definition_id(hashed)


def register(
    ctx: ProjectContext,
    name: str,
    files: dict[str, bytes],
    source: str,
    *,
    description: str = "",
    build_args: Mapping[str, str] | None = None,
) -> str:
    """Store a definition (idempotent) and return its id."""
    return _register(ctx, name, files, source, description, build_args)[0].id


def _register(
    ctx: ProjectContext,
    name: str,
    files: Mapping[str, bytes],
    source: str,
    description: str = "",
    build_args: Mapping[str, str] | None = None,
) -> tuple[Environment, bool]:
    if "Dockerfile" not in files:
        raise UsageError("an environment needs a file named Dockerfile at its top level")
    args = {str(k): str(v) for k, v in (build_args or {}).items()}
    env_id = environment_id(files, args)
    store = ctx.store
    with store.lock():
        if store.path(store.entity_path(KIND, env_id)).is_file():
            env = get(ctx, env_id)
            if not env.deleted_at:
                return env, False
            # Registered again after a delete that kept it for runs: it is back.
            env = env.evolve(name=name, deleted_at=None)
            store.write_entity(KIND, env.to_dict())
            return env, True
        # Stored normalised, so an id always means the very same bytes to build from.
        stored = {n: store.objects.put_bytes(normalise(files[n])) for n in sorted(files)}
        env = Environment(env_id, name, source, stored, utcnow(), description, args)
        store.write_entity(KIND, env.to_dict())
    return env, True


def get(ctx: ProjectContext, env_id: str) -> Environment:
    return Environment.from_dict(ctx.store.read_entity(KIND, env_id))


def resolve(ctx: ProjectContext, ref: str | None) -> Environment:
    """By id prefix (4+ hex characters) or exact name; None: the one in use."""
    if ref is None:
        env_id = in_use(ctx)
        try:
            return get(ctx, env_id)
        except NotFound:
            raise NotFound(
                f"the active environment {env_id[:8]} no longer exists; choose another with "
                "'datmo environment set ID' or 'datmo environment setup NAME'"
            ) from None
    try:
        found = get(ctx, ctx.store.resolve(KIND, ref))
    except (AmbiguousId, CorruptStore):
        raise
    except DatmoError:
        named = [env for env in ls(ctx) if env.name == ref]
        if len(named) > 1:
            raise AmbiguousId("environment", ref, [e.id for e in named]) from None
        if not named:
            raise NotFound(
                f"no environment with id or name '{ref}'; see 'datmo environment ls' "
                "(built-in ones: 'datmo environment setup --list')"
            ) from None
        return named[0]
    if found.deleted_at:
        raise NotFound(
            f"environment {found.id[:8]} was deleted (its definition is kept only for the runs "
            "and snapshots that recorded it); see 'datmo environment ls'"
        )
    return found


def ls(ctx: ProjectContext, deleted: bool = False) -> list[Environment]:
    """Oldest first; definitions deleted but kept for runs and snapshots only if asked."""
    store = ctx.store
    envs = [Environment.from_dict(store.read_entity(KIND, i)) for i in store.list_ids(KIND)]
    envs = [e for e in envs if deleted or not e.deleted_at]
    return sorted(envs, key=lambda e: (e.created_at, e.id))


def active_id(ctx: ProjectContext) -> str | None:
    return ctx.info.active_environment_id


def in_use(ctx: ProjectContext) -> str:
    """The environment a snapshot taken now records.

    The active one if set; else a Dockerfile in the project root (with the files
    it copies from beside it); else the built-in CPU Python definition.
    """
    active = ctx.info.active_environment_id
    if active:
        return active
    if (ctx.root / "Dockerfile").is_file():
        files, _ = _engine().project_definition(ctx.root)
        return register(ctx, "Dockerfile", files, "project")
    return _builtin_id(ctx, DEFAULT_TEMPLATE)


def in_use_id(ctx: ProjectContext) -> str:
    """The id in_use() would give, worked out without registering anything (listings)."""
    active = ctx.info.active_environment_id
    if active:
        return active
    if (ctx.root / "Dockerfile").is_file():
        files, _ = _engine().project_definition(ctx.root)
    else:
        files = templates.files(DEFAULT_TEMPLATE)
    return environment_id(files)


def watch_in_use(ctx: ProjectContext, watch: Watch) -> bool:
    """Sign what in_use() reads, before it reads it (tree/unchanged.py; the project record is
    signed already); False where that cannot be listed: a root Dockerfile's COPY lines."""
    if ctx.info.active_environment_id:
        return True
    if watch.add(ctx.root / "Dockerfile") is not None:
        return False
    cache = _builtin_cache(ctx, DEFAULT_TEMPLATE)
    watch.add(cache)
    try:
        _, env_id = cache.read_text().split()
    except (OSError, ValueError):
        return False  # in_use registers it now; the next create can keep its answer
    watch.add(ctx.store.path(ctx.store.entity_path(KIND, env_id)))
    watch.template = (*templates.folder(DEFAULT_TEMPLATE), templates.stamp(DEFAULT_TEMPLATE))
    return True


def _builtin_cache(ctx: ProjectContext, name: str) -> Path:
    return ctx.store.path("cache", f"builtin-{name}")


def _builtin_id(ctx: ProjectContext, name: str) -> str:
    """A built-in definition's id, registered if need be.

    Its files change only with datmo itself, so the id is cached, keyed by their sizes
    and times: hashing them for every snapshot would load the hash library (~5 ms).
    """
    from datmo.core.storage.fsutil import atomic_write_bytes

    store = ctx.store
    key = templates.stamp(name)
    cache = _builtin_cache(ctx, name)
    try:
        cached_key, env_id = cache.read_text().split()
    except (OSError, ValueError):
        pass  # no cache yet, or a damaged one: it is only a shortcut
    else:
        if cached_key == key and store.path(store.entity_path(KIND, env_id)).is_file():
            env = get(ctx, env_id)  # read, so a damaged record is named as before
            if not env.deleted_at:
                return env.id
    env_id = _register_builtin(ctx, name).id
    with contextlib.suppress(OSError):
        atomic_write_bytes(cache, f"{key} {env_id}\n".encode(), store.owner, durable=False)
    return env_id


def _register_builtin(ctx: ProjectContext, name: str) -> Environment:
    files = templates.files(name)
    description = templates.describe(files["Dockerfile"])
    return _register(ctx, name, files, BUILTIN_PREFIX + name, description)[0]


# -- commands -----------------------------------------------------------------------


@dataclass
class Created:
    """An environment registered (or found already registered)."""

    environment: Environment
    created: bool  # False: the same definition was already registered
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (COPY source, why)


def setup(ctx: ProjectContext, name: str) -> Environment:
    """Register a built-in definition and make it the active environment."""
    return set_active(ctx, _register_builtin(ctx, name).id)


def create(
    ctx: ProjectContext,
    paths: Sequence[str] = (),
    name: str | None = None,
    description: str = "",
    build_args: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Created:
    """A definition from --paths specs (SRC or SRC>DEST), else from the root Dockerfile."""
    skipped: list[tuple[str, str]] = []
    if paths:
        from datmo.core.controller.envfiles import files_from_paths

        files, default_name = files_from_paths(paths, cwd or Path.cwd())
        source = "user"
    else:
        files, skipped = _engine().project_definition(ctx.root)
        default_name, source = "Dockerfile", "project"
    env, created = _register(ctx, name or default_name, files, source, description, build_args)
    return Created(env, created, skipped)


def set_active(ctx: ProjectContext, ref: str) -> Environment:
    with ctx.store.lock():
        env = resolve(ctx, ref)
        info = ctx.info
        if info.active_environment_id != env.id:
            ctx.save_info(info.evolve(active_environment_id=env.id, updated_at=utcnow()))
    return env


def update(
    ctx: ProjectContext, ref: str, name: str | None = None, description: str | None = None
) -> Environment:
    if name is None and description is None:
        raise UsageError("nothing to change; give --name and/or --description")
    if name is not None and not name.strip():
        raise UsageError("--name cannot be empty")
    with ctx.store.lock():
        env = resolve(ctx, ref)
        changes = {"name": name, "description": description}
        env = env.evolve(**{k: v for k, v in changes.items() if v is not None})
        ctx.store.write_entity(KIND, env.to_dict())
    return env


@dataclass
class Deleted:
    """An environment removed, and how many of its images went with it."""

    environment: Environment
    images_removed: int | None  # None: no engine answered, so images were left
    kept_for: str | None = None  # what still uses its definition, which is kept for them


def delete(ctx: ProjectContext, ref: str, force: bool = False) -> Deleted:
    """Delete an environment and, when an engine answers, its images. One that snapshots
    or runs record is refused, naming them; with force its name and image go, and its
    definition stays (hidden) while they use it, so a rerun can build it again; gc
    frees it once nothing does. Its files stay in the object store until gc."""
    from datmo.core.controller import references

    with ctx.store.lock():
        env = resolve(ctx, ref)
        info = ctx.info
        is_active = info.active_environment_id == env.id
        if is_active and not force:
            raise DatmoError(
                f"environment {env.id[:8]} is the active environment; make another active with "
                "'datmo environment set ID' first, or pass --force"
            )
        snaps = references.snapshots_of_environment(ctx, env.id)
        runs = references.runs_of_environment(ctx, env.id)
        users = ", ".join(
            references.named(ids, noun) for ids, noun in ((snaps, "snapshot"), (runs, "run")) if ids
        )
        if users and not force:
            raise DatmoError(
                f"environment {env.id[:8]} is recorded by {users}; pass --force to remove its "
                "name and image (its definition is kept for them, so a rerun can rebuild it)"
            )
        with deferred_interrupt():  # the record and the pointer to it go together
            if users:
                kept = env.evolve(name="", deleted_at=env.deleted_at or utcnow())
                ctx.store.write_entity(KIND, kept.to_dict())
            else:
                ctx.store.delete_entity(KIND, env.id)
            if is_active:
                ctx.save_info(info.evolve(active_environment_id=None, updated_at=utcnow()))
    removed: int | None = None
    if _engine().engine_answers():
        try:
            removed = _engine().remove_images(f"datmo.environment={env.id}")
        except DatmoError:
            removed = None  # the record is gone either way; the CLI says images may remain
    return Deleted(env, removed, users or None)
