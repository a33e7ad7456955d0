"""Environment images: an environment's definition built into a Docker image.

The image is tagged `datmo-env:<id[:20]>`: an image with that tag is by construction up
to date (the id is a hash of the definition), so checking for one is a single inspect
request. A base image that is not on this machine and cannot be pulled (offline, no
registry) is said in one line before anything else happens, with the ways out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from datmo.core.controller.environment import _FULL_ID, get, resolve
from datmo.core.entity.environment import Environment
from datmo.core.storage.project import ProjectContext
from datmo.errors import BuildFailed, NotFound

IMAGE_REPO = "datmo-env"
_FROM = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", re.I | re.M)


def base_images(dockerfile: str) -> list[str]:
    """The images a Dockerfile builds FROM (not scratch, an earlier stage, or an ARG)."""
    found: list[str] = []
    stages: set[str] = set()
    for m in _FROM.finditer(dockerfile):
        image, alias = m.group(1), m.group(2)
        if image.lower() != "scratch" and image.lower() not in stages and "$" not in image:
            found.append(image)
        if alias:
            stages.add(alias.lower())
    return list(dict.fromkeys(found))


def missing_bases(ctx: ProjectContext, env: Environment) -> list[str]:
    """The environment's base images that are not on this machine (none: no engine)."""
    if not _engine().engine_answers():
        return []
    dockerfile = ctx.store.objects.read_bytes(env.files["Dockerfile"]).decode("utf-8", "replace")
    return [b for b in base_images(dockerfile) if _engine().image_id(b) is None]


def _ensure_base(image: str, progress: Callable[[str], None] | None) -> None:
    """A base image is here, or pulled now; else one line that says the ways out, before
    any snapshot or record is made (offline, the engine's own error is a DNS failure)."""
    if _engine().image_id(image) is not None:
        return
    import docker

    if progress:
        progress(f"pulling the base image {image} ...")
    try:
        _engine().client().images.pull(image)
    except (docker.errors.APIError, docker.errors.ImageNotFound, OSError) as e:
        why = str(getattr(e, "explanation", None) or e).strip().splitlines()[0][:160]
        raise BuildFailed(
            f"the base image {image} is not on this machine and cannot be pulled ({why}); "
            "run with --executor local, or base your Dockerfile on an image this machine "
            "has (see 'docker images')"
        ) from None


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
    for base in base_images(files["Dockerfile"].decode("utf-8", "replace")):
        _ensure_base(base, progress)
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
