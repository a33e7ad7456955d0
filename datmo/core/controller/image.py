"""Environment images: an environment's definition built into a Docker image.

The image is tagged `datmo-env:<id[:20]>`: an image with that tag is by construction up
to date (the id is a hash of the definition), so checking for one is a single inspect
request. A base image that is not on this machine and cannot be pulled (offline, no
registry) is said in one line before anything else happens, with the ways out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from datmo.core.controller.environment import _FULL_ID, get, resolve
from datmo.core.entity.environment import Environment
from datmo.core.storage.project import ProjectContext
from datmo.errors import NotFound

IMAGE_REPO = "datmo-env"


def _engine() -> Any:
    """The Docker engine's client module, imported on first use."""
    from datmo.core.executor import engine

    return engine


def image_tag(env_id: str) -> str:
    return f"{IMAGE_REPO}:{env_id[:20]}"


def image_states(envs: Sequence[Environment]) -> dict[str, bool] | None:
    """Which environments have a built image, from one plain request (no docker SDK);
    None when the engine cannot be asked that cheaply."""
    tags = _engine().image_tags(IMAGE_REPO)
    return None if tags is None else {e.id: image_tag(e.id) in tags for e in envs}


@dataclass
class Built:
    """An environment's image, built or found."""

    environment: Environment
    image_id: str
    tag: str
    built: bool  # False: the image was already there


def ensure_image(
    ctx: ProjectContext,
    env_id: str,
    progress: Callable[[str], None] | None = None,
    no_cache: bool = False,
) -> str:
    """The image id of an environment, building it only when its tag is missing."""
    return _ensure(ctx, env_id, progress, no_cache)[0]


def build(
    ctx: ProjectContext,
    ref: str | None,
    progress: Callable[[str], None] | None = None,
    no_cache: bool = False,
) -> Built:
    env = resolve(ctx, ref)
    image_id, built = _ensure(ctx, env.id, progress, no_cache)
    return Built(env, image_id, image_tag(env.id), built)


def _ensure(
    ctx: ProjectContext, env_id: str, progress: Callable[[str], None] | None, no_cache: bool
) -> tuple[str, bool]:
    if not _FULL_ID.match(env_id):
        env_id = resolve(ctx, env_id).id
    tag = image_tag(env_id)
    old = _engine().image_id(tag)
    if old is not None and not no_cache:
        return old, False
    try:
        env = get(ctx, env_id)
    except NotFound:
        raise NotFound(f"no environment {env_id[:8]} in this project to build") from None
    files = {n: ctx.store.objects.read_bytes(d) for n, d in env.files.items()}
    labels = {"datmo.environment": env.id, "datmo.project": ctx.info.id}
    try:
        image = _engine().build_image(
            _engine().build_context(files),
            tag,
            labels,
            env.build_args,
            f"environment {env.id[:8]}",
            progress,
            no_cache,
        )
    except _engine().ImageBuildFailed as e:
        if progress is None:  # nobody saw the output go by; the error itself is one line
            _engine().write_tail(e.tail)
        raise
    if old is not None and old != image:
        _engine().remove_stale(old)
    return image, True
