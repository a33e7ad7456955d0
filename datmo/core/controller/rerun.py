"""`datmo rerun`: the same command, options, before snapshot and image, in a scratch copy.

The working tree is never touched: the before snapshot is written into a working copy
(controller/workcopy.py), the task runs there, and the supervisor removes it once the
after snapshot is taken.
"""

from __future__ import annotations

import os
from typing import Any

from datmo.core.controller import run as runs
from datmo.core.controller import snapshot as snapshots
from datmo.core.controller import workcopy
from datmo.core.entity.base import new_id
from datmo.core.entity.run import Run
from datmo.core.storage.project import ProjectContext
from datmo.core.task.spec import RunSpec, parse_data, parse_env, parse_port
from datmo.errors import DatmoError


def spec_of(orig: Run, config: dict[str, Any], env_items: tuple[str, ...], detach: bool) -> RunSpec:
    """The original run's options, validated again, with its secrets from the caller.
    config: what its task was given (its before snapshot's)."""
    env = dict(orig.env)
    given = parse_env(env_items)
    for name in orig.secret_env:
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(given)
    missing = [n for n in orig.secret_env if n not in env]
    if missing:
        names = ", ".join(missing)
        raise DatmoError(
            f"the original run used secret(s) {names}, which are not stored; set them in your "
            f"environment or pass -e {missing[0]}=VALUE"
        )
    opts = orig.options
    return RunSpec(
        command=orig.command,
        executor=orig.executor,
        environment=orig.environment_id if orig.executor == "docker" else None,
        gpus=opts.get("gpus"),
        ports=[parse_port(p) for p in opts.get("ports", [])],
        memory=opts.get("memory"),
        cpus=opts.get("cpus"),
        data=[
            parse_data(f"{src}>{name}" + (":rw" if rw else ""))
            for src, name, rw in opts.get("data", [])
        ],
        env=env,
        config=dict(config),
        message=f"rerun of {orig.id[:8]}",
        detach=detach,
        capture=opts.get("capture", True),
        type=orig.type,
        cwd=str(opts.get("cwd") or ""),
    )


def _image(ctx: ProjectContext, orig: Run, spec: RunSpec, progress: Any) -> str | None:
    """The original image when it still exists; otherwise the environment built again."""
    if spec.executor != "docker":
        return None
    from datmo.core.controller import image
    from datmo.core.executor.engine import client

    if orig.image_id:
        try:
            client().images.get(orig.image_id)
            return orig.image_id
        except Exception:
            if progress:
                progress(f"image {orig.image_id[:19]} is gone; building environment again")
    if not orig.environment_id:
        raise DatmoError(f"run {orig.id[:8]} recorded no environment to rebuild")
    return image.ensure_image(ctx, orig.environment_id, progress)


def start(
    ctx: ProjectContext, ref: str, env_items: tuple[str, ...], detach: bool, progress: Any = None
) -> Run:
    orig = runs.get(ctx, ref)
    if not orig.before_snapshot_id:
        raise DatmoError(f"run {orig.id[:8]} has no before snapshot to start from")
    before = snapshots.get(ctx, orig.before_snapshot_id)
    spec = spec_of(orig, before.config, env_items, detach)
    image = _image(ctx, orig, spec, progress)
    run_id = new_id()
    rel = workcopy.make(ctx, before, run_id)  # the same mechanism as a queued run's
    try:
        return runs.start(
            ctx,
            spec,
            progress,
            before_snapshot_id=before.id,
            workdir=rel,
            rerun_of=orig.id,
            image_id=image,
            run_id=run_id,
        )
    except BaseException:
        workcopy.remove(ctx, rel)
        raise
