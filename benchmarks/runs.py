"""Runs: what `datmo run` adds to a container, the no-build check, listing and filtering.

- run-container: the container part of `datmo run "true"` (the record's `timings.task_s`,
  creating the container to removing it, timed inside datmo) against a whole
  `docker run --rm IMAGE true` on the same image.
- run-nobuild: `ensure_image` of an unchanged environment, in-process with the client
  made, against one raw inspect request to the engine (also shown: the docker SDK's
  `client.images.get`, and the `docker image inspect` CLI).
- run-overhead: `datmo run --executor docker true` in the large project, minus
  `docker run --rm IMAGE true`, against `python -c "import click, docker, git"`; the
  record's timings are shown beside it.
- ls-100k: `datmo ls --limit 20` with many runs against the same with 10.
- filter-vs-mlflow: a metric filter over many runs, datmo's `run.ls` against MLflow's
  `search_runs` on its SQLite store, both timed in one process (MLflow's virtualenv).

Run records for the listing benchmarks are written through datmo's store
(`Store.write_entity`, as `run.save` writes them), and the index is brought up to
date by `RunIndex.refresh`, the path datmo takes when records were added behind its
back; a sample also goes through `run.save` itself, to show its cost per run.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from benchmarks.context import QUICK, Context
from benchmarks.harness import (
    ROOT,
    CommandFailed,
    Row,
    Samples,
    Section,
    Skip,
    Step,
    fmt_seconds,
    interleaved,
    log,
    run,
    timed,
)
from benchmarks.tools import PYTHON, remove
from benchmarks.trees import make_tree, wait_until_settled

BASE_IMAGE = "datmo-test/busybox:latest"  # scripts/test-images.sh builds it; never pulled
MLFLOW_VENV = "venv-mlflow"
GIT_SITE = "site-gitpython"  # GitPython for the import reference, beside this python's own
FILTER = "acc>0.9 and lr=0.01"
MLFLOW_FILTER = "metrics.acc > 0.9 and params.lr = '0.01'"
LRS = (0.001, 0.003, 0.01, 0.03, 0.1)
QUIET_MLFLOW = {"DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}


@dataclass(frozen=True)
class RunSizes:
    reps_run: int  # repetitions of `datmo run` / `docker run` (about a second each)
    reps_fast: int  # samples of the in-process and millisecond figures
    calls_per_sample: int  # in-process calls averaged into one sample
    many_runs: int  # "100,000 runs" for ls
    few_runs: int  # "10 runs" for ls
    filter_runs: int  # "10,000 runs" for the filter against MLflow
    saved_sample: int  # runs written through run.save (the rest through the store)


FULL_RUNS = RunSizes(11, 21, 50, 100_000, 10, 10_000, 200)
QUICK_RUNS = RunSizes(3, 5, 20, 2_000, 10, 500, 20)


def sizes_of(ctx: Context) -> RunSizes:
    return QUICK_RUNS if ctx.sizes == QUICK else FULL_RUNS


# -- Docker projects ------------------------------------------------------------------


def _require_docker(env: Mapping[str, str]) -> None:
    if shutil.which("docker") is None:
        raise Skip("the docker CLI is not installed (make sysdeps)")
    try:
        run(["docker", "version", "--format", "{{.Server.Version}}"], env=env, timeout=30)
    except (CommandFailed, subprocess.TimeoutExpired) as e:
        raise Skip(f"no Docker engine answers: {str(e).strip()[-200:]}") from e
    try:
        run(["docker", "image", "inspect", BASE_IMAGE], env=env, timeout=30)
    except CommandFailed as e:
        raise Skip(f"{BASE_IMAGE} is missing (bash scripts/test-images.sh busybox)") from e


def _docker_project(ctx: Context, proj: Path, name: str) -> str:
    """datmo init in proj with a root Dockerfile on busybox; returns the project id.

    The LABEL gives this benchmark an environment (and image tag) of its own, so
    removing its images afterwards never touches an image the tests share.
    """
    from datmo.core.controller.project import open_project

    proj.mkdir(parents=True, exist_ok=True)
    (proj / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nLABEL datmo.bench={name}\n")
    written = time.time()
    run(ctx.tools.datmo_cmd("init"), cwd=proj, env=ctx.tools.env)
    wait_until_settled(written)  # as a project that was not edited this very moment
    return open_project(proj).info.id


def _remove_images(project_id: str, env: Mapping[str, str]) -> None:
    label = f"label=datmo.project={project_id}"
    with contextlib.suppress(CommandFailed):
        found = run(["docker", "ps", "-aq", "--filter", label], env=env).stdout.split()
        if found:
            run(["docker", "rm", "-f", *[c.decode() for c in found]], env=env)
        images = run(["docker", "image", "ls", "-q", "--filter", label], env=env).stdout.split()
        if images:
            run(["docker", "image", "rm", "-f", *sorted({i.decode() for i in images})], env=env)


def _containers_left(project_id: str, env: Mapping[str, str]) -> int:
    label = f"label=datmo.project={project_id}"
    return len(run(["docker", "ps", "-aq", "--filter", label], env=env).stdout.split())


def _last_run(proj: Path) -> Any:
    from datmo.core.controller import run as runs
    from datmo.core.controller.project import open_project

    found = runs.ls(open_project(proj), limit=1)
    if not found:
        raise AssertionError(f"no run recorded in {proj}")
    return found[0]


def _datmo_run_step(ctx: Context, proj: Path, name: str = "datmo run") -> Step:
    """One foreground `datmo run --executor docker true`: its wall time and its timings."""
    argv = ctx.tools.datmo_cmd("run", "--executor", "docker", "true")

    def step() -> dict[str, float]:
        wall = timed(argv, cwd=proj, env=ctx.tools.env)
        rec = _last_run(proj)
        if rec.status != "SUCCESS" or rec.command != "true":
            raise AssertionError(f"run {rec.id[:8]} is {rec.status}: {rec.error}")
        timings = {k: float(v) for k, v in rec.timings.items()}
        missing = {"environment_s", "before_snapshot_s", "task_s", "after_snapshot_s"} - set(
            timings
        )
        if missing:
            raise AssertionError(f"run {rec.id[:8]} records no {', '.join(sorted(missing))}")
        return {name: wall, **timings}

    return step


def _first_run(ctx: Context, proj: Path) -> tuple[float, Any]:
    """The untimed first run: the before snapshot and the image build happen here."""
    started = time.perf_counter()
    run(ctx.tools.datmo_cmd("run", "--executor", "docker", "true"), cwd=proj, env=ctx.tools.env)
    elapsed = time.perf_counter() - started
    rec = _last_run(proj)
    if rec.status != "SUCCESS" or not rec.image_id:
        raise AssertionError(f"the first run is {rec.status}: {rec.error}")
    return elapsed, rec


def _cmd_step(name: str, argv: list[str], env: Mapping[str, str], cwd: Path | None = None) -> Step:
    return lambda: {name: timed(argv, cwd=cwd, env=env)}


def _docker_run(image: str, *opts: str) -> list[str]:
    return ["docker", "run", "--rm", *opts, image, "true"]


# -- run-container --------------------------------------------------------------------


def bench_container(ctx: Context) -> Section:
    env, rs = ctx.tools.env, sizes_of(ctx)
    _require_docker(env)
    base = ctx.workdir / "run-container"
    remove(base)
    proj = base / "project"
    project_id = _docker_project(ctx, proj, "run-container")
    section = Section("`datmo run`: the container part against `docker run`")
    try:
        log("run-container: first run (builds the image)")
        first_s, first = _first_run(ctx, proj)
        image = first.image_id
        steps: dict[str, Step] = {
            "datmo run": _datmo_run_step(ctx, proj),
            "docker run": _cmd_step("docker run", _docker_run(image), env),
            "docker run --init": _cmd_step("docker run --init", _docker_run(image, "--init"), env),
        }
        log(f"run-container: timing ({rs.reps_run} repetitions)")
        s = interleaved(steps, rs.reps_run)
        left = _containers_left(project_id, env)
        task, docker_s, init_s = (
            s.median("task_s"),
            s.median("docker run"),
            s.median("docker run --init"),
        )
        ref = f"docker run --rm IMAGE true {fmt_seconds(docker_s)}"
        section.rows = [
            Row(
                "`datmo run true`: container part (timings.task_s) vs docker run --rm",
                "max",
                1.3,
                task,
                docker_s,
                ref,
            ),
            Row(
                "`datmo run true`: container part (timings.task_s) vs docker run --rm --init",
                "info",
                1.3,
                task,
                init_s,
                f"docker run --rm --init IMAGE true {fmt_seconds(init_s)}",
            ),
        ]
        section.details = [
            f"image: {image[:19]} (`FROM {BASE_IMAGE}`, built by the first run)",
            f"first run, building the image (not timed against anything): {fmt_seconds(first_s)}",
            "datmo's container part runs in its supervisor: creating the container, "
            "attaching, starting, waiting, removing it (the docker SDK, engine init on)",
            *(f"{name}: {s.spread(name)}" for name in s.values),
            f"containers of this project left after the timings: {left}",
        ]
    finally:
        _remove_images(project_id, env)
        if not ctx.keep:
            remove(base)
    return section


# -- run-nobuild ----------------------------------------------------------------------


def _unix_socket() -> str | None:
    """The engine's socket path when DOCKER_HOST names one (or is unset)."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    parts = urlsplit(host)
    return parts.path if parts.scheme in ("unix", "http+unix") and parts.path else None


def _raw_inspect(path: str, ref: str) -> Callable[[], Any]:
    """One image inspect as plain HTTP over the engine's socket, body parsed: what
    `docker image inspect` asks the engine, without a client library around it."""
    request = f"GET /images/{quote(ref, safe=':/@')}/json HTTP/1.0\r\nHost: docker\r\n\r\n"
    data = request.encode()

    def call() -> Any:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(path)
            sock.sendall(data)
            chunks = []
            while chunk := sock.recv(1 << 16):
                chunks.append(chunk)
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        if head.split(b" ", 2)[1:2] != [b"200"]:
            raise AssertionError(f"raw inspect of {ref}: {head[:100]!r}")
        return json.loads(body)

    return call


def _per_call(name: str, fn: Callable[[], object], calls: int) -> Step:
    def step() -> dict[str, float]:
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        return {name: (time.perf_counter() - started) / calls}

    return step


def bench_nobuild(ctx: Context) -> Section:
    from datmo.core.controller import image
    from datmo.core.controller.project import open_project
    from datmo.core.executor import engine

    env, rs = ctx.tools.env, sizes_of(ctx)
    _require_docker(env)
    base = ctx.workdir / "run-nobuild"
    remove(base)
    proj = base / "project"
    project_id = _docker_project(ctx, proj, "run-nobuild")
    section = Section("`datmo run`: the check that an unchanged environment needs no build")
    try:
        pctx = open_project(proj)
        log("run-nobuild: building the environment once")
        built = image.build(pctx, None)
        again = image.build(pctx, None)
        if again.built or again.image_id != built.image_id:
            raise AssertionError("a second build of an unchanged environment built again")
        env_id, tag = built.environment.id, built.tag
        client = engine.client()  # made once, as the check finds it in `datmo run`
        if image.ensure_image(pctx, env_id) != built.image_id:
            raise AssertionError("ensure_image answered another image")
        calls = rs.calls_per_sample
        steps: dict[str, Step] = {
            "ensure_image": _per_call(
                "ensure_image", lambda: image.ensure_image(pctx, env_id), calls
            ),
            "client.images.get": _per_call(
                "client.images.get", lambda: client.images.get(tag), calls
            ),
            "docker image inspect": _cmd_step(
                "docker image inspect", ["docker", "image", "inspect", tag], env
            ),
        }
        sock = _unix_socket()
        if sock is not None:
            raw = _raw_inspect(sock, tag)
            if raw()["Id"] != built.image_id:
                raise AssertionError("the raw inspect answered another image")
            steps["raw inspect"] = _per_call("raw inspect", raw, calls)
        log(f"run-nobuild: timing ({rs.reps_fast} samples of {calls} calls)")
        s = interleaved(steps, rs.reps_fast)
        ensure = s.median("ensure_image")
        target = Row(
            "no-build check (`ensure_image`, in-process) vs one raw inspect request",
            "max",
            2.0,
            ensure,
        )
        if sock is None:
            target.skipped = "DOCKER_HOST is not a unix socket; see the SDK row"
        else:
            raw_s = s.median("raw inspect")
            target.reference = raw_s
            target.reference_text = f"GET /images/TAG/json over the socket {fmt_seconds(raw_s)}"
        sdk_s, cli_s = s.median("client.images.get"), s.median("docker image inspect")
        section.rows = [
            target,
            Row(
                "no-build check (`ensure_image`) vs the same SDK call",
                "info",
                2.0,
                ensure,
                sdk_s,
                f"client.images.get(tag) {fmt_seconds(sdk_s)}",
            ),
            Row(
                "no-build check (`ensure_image`) vs the `docker image inspect` CLI",
                "info",
                2.0,
                ensure,
                cli_s,
                f"docker image inspect TAG {fmt_seconds(cli_s)}",
            ),
        ]
        section.details = [
            f"environment {env_id[:8]}, tag {tag}; the docker client made before timing",
            "in-process figures: the mean of "
            f"{calls} calls per sample, {rs.reps_fast} samples interleaved",
            "the target's reference is the raw API request (new connection, HTTP/1.0, JSON "
            "parsed), the engine's own cost; `client.images.get` is the call ensure_image "
            "makes; the CLI figure includes starting the docker binary",
            *(f"{name}: {s.spread(name)}" for name in s.values),
        ]
    finally:
        _remove_images(project_id, env)
        if not ctx.keep:
            remove(base)
    return section


# -- run-overhead ---------------------------------------------------------------------


def ensure_gitpython(ctx: Context) -> tuple[dict[str, str] | None, str]:
    """An environment in which this python imports GitPython: (env, "") or (None, why).

    Installed on first use with pip --target under the scratch folder (kept for later
    runs), so the reference runs the same interpreter as datmo and changes no venv.
    """
    env, probe = ctx.tools.env, ctx.tools.python_cmd("import git")
    if subprocess.run(probe, env=env, capture_output=True).returncode == 0:
        return env, ""
    target = ctx.workdir / GIT_SITE
    with_git = dict(env)
    with_git["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(target)]))

    def importable() -> bool:
        proc = subprocess.run(probe, env=with_git, capture_output=True)
        return proc.returncode == 0

    if target.is_dir() and importable():
        return with_git, ""
    log(f"installing GitPython into {target} (once; reused by later runs)")
    try:
        remove(target)
        pip = [ctx.tools.python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        run([*pip, "--target", target, "gitpython"], env=env, timeout=600)
    except (CommandFailed, subprocess.TimeoutExpired) as e:
        return None, f"GitPython could not be installed: {str(e).strip().splitlines()[-1][:200]}"
    return (with_git, "") if importable() else (None, "GitPython installed but not importable")


def bench_overhead(ctx: Context) -> Section:
    env, rs, spec = ctx.tools.env, sizes_of(ctx), ctx.sizes.big_tree
    _require_docker(env)
    base = ctx.workdir / "run-overhead"
    remove(base)
    proj = base / "project"
    log(f"run-overhead: writing {spec.describe()}")
    make_tree(proj, spec)
    project_id = _docker_project(ctx, proj, "run-overhead")
    section = Section(f"`datmo run` overhead in an unchanged project: {spec.describe()}")
    try:
        git_env, git_skip = ensure_gitpython(ctx)
        log("run-overhead: first run (first snapshot, image build)")
        first_s, first = _first_run(ctx, proj)
        image = first.image_id
        import_code = "import click, docker, git" if git_env else "import click, docker"
        steps: dict[str, Step] = {
            "datmo run": _datmo_run_step(ctx, proj),
            "docker run": _cmd_step("docker run", _docker_run(image), env),
            "import": _cmd_step("import", ctx.tools.python_cmd(import_code), git_env or env),
        }
        log(f"run-overhead: timing ({rs.reps_run} repetitions)")
        s = interleaved(steps, rs.reps_run)
        section.rows = _overhead_rows(s, import_code, git_skip)
        section.details = [
            f"first run, with the first snapshot and the image build (not timed against "
            f"anything): {fmt_seconds(first_s)}",
            "overhead = median wall time of `datmo run --executor docker true` (foreground, "
            "as typed) minus median of `docker run --rm IMAGE true`, same image, interleaved",
            "the rows under it split that overhead with the run records' timings (medians); "
            "the rest is what they do not cover: the CLI's and the supervisor's start-up and "
            "imports, the run record's writes, the hand-over, and following the log to the end",
            *(f"{name}: {s.spread(name)}" for name in s.values),
        ]
        if git_env is not None and git_env is not env:
            section.details.append(f"GitPython for the reference: {ctx.workdir / GIT_SITE}")
    finally:
        _remove_images(project_id, env)
        if not ctx.keep:
            remove(base)
    return section


def _overhead_rows(s: Samples, import_code: str, git_skip: str) -> list[Row]:
    wall, docker_s, imp = s.median("datmo run"), s.median("docker run"), s.median("import")
    overhead = wall - docker_s
    ref_text = f'python -c "{import_code}" {fmt_seconds(imp)}'
    target = Row(
        "`datmo run true` overhead (wall minus docker run --rm) vs import click, docker, git",
        "max",
        1.5,
        overhead,
        imp,
        f"{ref_text} (datmo run {fmt_seconds(wall)}, docker run {fmt_seconds(docker_s)})",
    )
    if git_skip:
        target.skipped = git_skip
    parts = {
        "environment_s (image check)": s.median("environment_s"),
        "before_snapshot_s": s.median("before_snapshot_s"),
        "task_s minus docker run": s.median("task_s") - docker_s,
        "after_snapshot_s": s.median("after_snapshot_s"),
    }
    parts["the rest: start-ups, records, hand-over, follow"] = overhead - sum(parts.values())
    rows = [target]
    for name, value in parts.items():
        rows.append(Row(f"  of which (medians) {name}", "info", 1.5, value, imp, ref_text))
    return rows


# -- run records for ls and filter ----------------------------------------------------

_EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)


def run_values(i: int, seed: int) -> tuple[dict[str, Any], dict[str, float]]:
    """Run i's config and metrics; the same for datmo's records and MLflow's runs."""
    rng = random.Random(f"{seed}:{i}")
    config = {"lr": rng.choice(LRS), "layers": rng.randrange(1, 9), "optimizer": "adam"}
    metrics = {"acc": round(rng.uniform(0.5, 1.0), 4), "loss": round(rng.uniform(0.01, 2.0), 4)}
    return config, metrics


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="microseconds").replace("+00:00", "Z")


def run_doc(i: int, seed: int) -> dict[str, Any]:
    """A finished docker run as `datmo run` records it."""
    from datmo.core.entity.run import FAILED, SUCCESS, Run

    rng = random.Random(f"doc:{seed}:{i}")
    config, metrics = run_values(i, seed)
    start = _EPOCH + timedelta(seconds=60 * i, microseconds=rng.randrange(1_000_000))
    duration = rng.uniform(10, 50)
    code = 1 if rng.random() < 0.05 else 0
    command = f"python train.py --lr {config['lr']} --layers {config['layers']}"
    record = Run(
        id=rng.randbytes(20).hex(),
        command=command,
        created_at=_iso(start),
        status=SUCCESS if code == 0 else FAILED,
        exit_code=code,
        environment_id=rng.randbytes(32).hex(),
        image_id="sha256:" + rng.randbytes(32).hex(),
        config=config,
        metrics=metrics,
        options={"capture": True},
        before_snapshot_id=rng.randbytes(20).hex(),
        after_snapshot_id=rng.randbytes(20).hex(),
        started_at=_iso(start),
        ended_at=_iso(start + timedelta(seconds=duration)),
        duration_s=round(duration, 3),
        supervisor={"pid": 1000 + i % 30000, "start": 12345.0 + i, "foreground": None},
        container_id=rng.randbytes(32).hex(),
        timings={"environment_s": 0.01, "before_snapshot_s": 0.05, "task_s": 0.6},
    )
    return record.to_dict()


def make_runs(proj: Path, n: int, seed: int, saved: int) -> list[str]:
    """n run records in the project at proj; returns lines for the details.

    The first `saved` go through run.save (record and index row under the lock, as
    `datmo run` writes them); the rest through Store.write_entity on a few threads
    (its fsyncs overlap), then RunIndex.refresh brings the index up to date.
    """
    from datmo.core.controller.project import open_project
    from datmo.core.entity.run import Run
    from datmo.core.storage import runs as records
    from datmo.core.storage.index import RunIndex

    ctx = open_project(proj)
    saved = min(saved, n)
    started = time.perf_counter()
    for i in range(saved):
        records.save(ctx.store, Run.from_dict(run_doc(i, seed)))
    save_s = time.perf_counter() - started
    started = time.perf_counter()
    batch = 5_000
    with ThreadPoolExecutor(8) as pool:
        for first in range(saved, n, batch):
            docs = [run_doc(i, seed) for i in range(first, min(first + batch, n))]
            for _ in pool.map(lambda d: ctx.store.write_entity("runs", d), docs):
                pass
    write_s = time.perf_counter() - started
    idx = RunIndex(ctx.store)
    try:
        started = time.perf_counter()
        changed = idx.refresh()
        refresh_s = time.perf_counter() - started
    finally:
        idx.close()
    lines = []
    if saved:
        per = save_s / saved
        lines.append(
            f"{saved:,} runs through run.save: {fmt_seconds(save_s)} "
            f"({per * 1000:.1f} ms a run; {n:,} that way would take {fmt_seconds(per * n)})"
        )
    if n > saved:
        lines.append(
            f"{n - saved:,} records through Store.write_entity (8 threads): {fmt_seconds(write_s)}"
        )
        lines.append(
            f"RunIndex.refresh, {changed:,} rows from the records: {fmt_seconds(refresh_s)}"
        )
    return lines


def _init_project(ctx: Context, proj: Path) -> None:
    proj.mkdir(parents=True, exist_ok=True)
    (proj / "train.py").write_text("print('accuracy: 0.9')\n")
    run(ctx.tools.datmo_cmd("init"), cwd=proj, env=ctx.tools.env)


# -- ls-100k --------------------------------------------------------------------------


def _live_step(argv: list[str], env: Mapping[str, str], proj: Path) -> Step:
    """A listing right after a RUNNING run's supervisor recorded its latest metrics (as it
    does every second): the index must not rescan every record for it."""
    from datmo.core.controller.project import open_project
    from datmo.core.entity.base import new_id, utcnow
    from datmo.core.entity.run import Run
    from datmo.core.storage import runs as records

    store = open_project(proj).store
    live = Run(
        id=new_id(),
        command="python train.py",
        created_at=utcnow(),
        supervisor={"pid": os.getpid()},  # this process: the run shows as RUNNING
    )
    step = [0]

    def measure() -> dict[str, float]:
        step[0] += 1
        records.save(store, live.evolve(metrics={"step": step[0], "loss": 1 / step[0]}))
        return {"ls many live": timed(argv, cwd=proj, env=env)}

    return measure


def bench_ls(ctx: Context) -> Section:
    from datmo.core.controller.project import open_project
    from datmo.core.storage.index import RunIndex

    tools, env, rs = ctx.tools, ctx.tools.env, sizes_of(ctx)
    many, few = rs.many_runs, rs.few_runs
    base = ctx.workdir / "ls-100k"
    remove(base)
    many_proj, few_proj = base / "many", base / "few"
    section = Section(f"`datmo ls --limit 20`: {many:,} runs against {few}")
    for proj, n in ((many_proj, many), (few_proj, few)):
        _init_project(ctx, proj)
        log(f"ls-100k: writing {n:,} run records")
        started = time.perf_counter()
        lines = make_runs(proj, n, seed=n, saved=min(rs.saved_sample, n))
        took = fmt_seconds(time.perf_counter() - started)
        section.details.append(f"generating {n:,} runs: {took} ({'; '.join(lines)})")

    ls = ["ls", "--limit", "20"]
    ls_filter = ["ls", "--filter", FILTER, "--limit", "20"]
    for proj, n in ((many_proj, many), (few_proj, few)):
        for _ in range(2):  # the first brings the index up to date, as after any writer
            out = run(tools.datmo_cmd(*ls), cwd=proj, env=env).stdout.decode()
        if len(out.splitlines()) != min(n, 20) + 2:  # header and rule
            raise AssertionError(f"`datmo ls --limit 20` printed {len(out.splitlines())} lines")
        idx = RunIndex(open_project(proj).store)
        try:
            if not idx.is_fresh():
                section.details.append(f"the index of {n:,} runs is stale after two ls (a bug)")
        finally:
            idx.close()
    steps: dict[str, Step] = {
        "ls many": _cmd_step("ls many", tools.datmo_cmd(*ls), env, many_proj),
        "ls many live": _live_step(tools.datmo_cmd(*ls), env, many_proj),
        "ls few": _cmd_step("ls few", tools.datmo_cmd(*ls), env, few_proj),
        "ls filter many": _cmd_step("ls filter many", tools.datmo_cmd(*ls_filter), env, many_proj),
        "ls filter few": _cmd_step("ls filter few", tools.datmo_cmd(*ls_filter), env, few_proj),
    }
    log(f"ls-100k: timing ({rs.reps_fast} repetitions)")
    s = interleaved(steps, rs.reps_fast)
    few_s, few_f = s.median("ls few"), s.median("ls filter few")
    section.rows = [
        Row(
            f"`datmo ls --limit 20` with {many:,} runs vs with {few}",
            "max",
            1.2,
            s.median("ls many"),
            few_s,
            f"{few} runs {fmt_seconds(few_s)}",
        ),
        Row(
            f"`datmo ls --limit 20` with {many:,} runs, right after a RUNNING run wrote its "
            "latest metrics, vs without that write",
            "max",
            1.2,
            s.median("ls many live"),
            s.median("ls many"),
            f"{many:,} runs, no write {fmt_seconds(s.median('ls many'))}",
        ),
        Row(
            f'`datmo ls --filter "{FILTER}" --limit 20` with {many:,} runs vs with {few}',
            "info",
            1.2,
            s.median("ls filter many"),
            few_f,
            f"{few} runs {fmt_seconds(few_f)}",
        ),
    ]
    section.details += [f"{name}: {s.spread(name)}" for name in s.values]
    if not ctx.keep:
        remove(base)
    return section


# -- filter-vs-mlflow -----------------------------------------------------------------


def ensure_mlflow(workdir: Path) -> tuple[Path | None, str]:
    """A virtualenv with MLflow and datmo's dependencies: (its python, "") or (None, why).

    Installed on first use (a few minutes), then reused; datmo itself comes from this
    checkout through PYTHONPATH.
    """
    venv = workdir / MLFLOW_VENV
    py = venv / "bin" / "python"
    needs = "import mlflow, sqlalchemy, pandas, click, docker, yaml, tabulate, blake3"
    env = {**os.environ, **QUIET_MLFLOW}
    if (
        py.is_file()
        and subprocess.run([py, "-c", needs], capture_output=True, env=env).returncode == 0
    ):
        return py, ""
    deps = _dependencies()
    log(f"installing MLflow into {venv} (once; reused by later runs)")
    try:
        run([PYTHON, "-m", "venv", "--clear", venv], timeout=300)
        pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        run([*pip, "mlflow", *deps], timeout=1800)
    except (CommandFailed, subprocess.TimeoutExpired) as e:
        return None, f"MLflow could not be installed: {str(e).strip().splitlines()[-1][:200]}"
    proc = subprocess.run([py, "-c", needs], capture_output=True, env=env)
    if proc.returncode != 0:
        return None, f"MLflow installed but not importable: {proc.stderr.decode()[-200:]}"
    return py, ""


def _dependencies() -> list[str]:
    """datmo's requirements, from pyproject.toml."""
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        block = re.search(r"^dependencies = \[(.*?)\]", text, re.S | re.M)
        return re.findall(r'"([^"]+)"', block.group(1)) if block else []
    deps: list[str] = tomllib.loads(text)["project"]["dependencies"]
    return deps


def _in_mlflow_venv(py: Path, ctx: Context, cwd: Path, *args: str) -> dict[str, Any]:
    """`python -m benchmarks.runs ARGS` in MLflow's virtualenv; its JSON answer."""
    env = {**ctx.tools.env, **QUIET_MLFLOW}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = run([py, "-m", "benchmarks.runs", *args], cwd=cwd, env=env)
    answer: dict[str, Any] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return answer


def bench_filter(ctx: Context) -> Section:
    rs = sizes_of(ctx)
    n = rs.filter_runs
    section = Section(f"A metric filter over {n:,} runs: datmo against MLflow's SQLite store")
    py, why = ensure_mlflow(ctx.workdir)
    label = f"filter `{FILTER}` over {n:,} runs (run.ls) vs mlflow.search_runs, SQLite"
    if py is None:
        section.rows = [Row(label, "speedup", 10.0, skipped=why)]
        return section
    base = ctx.workdir / "filter-vs-mlflow"
    remove(base)
    proj = base / "project"
    _init_project(ctx, proj)
    seed = 7
    log(f"filter-vs-mlflow: writing {n:,} datmo run records")
    started = time.perf_counter()
    lines = make_runs(proj, n, seed, saved=0)
    made = fmt_seconds(time.perf_counter() - started)
    section.details.append(f"generating {n:,} datmo runs: {made} ({'; '.join(lines)})")
    db = base / "mlflow.db"
    log(f"filter-vs-mlflow: logging {n:,} MLflow runs (MlflowClient, log_batch)")
    gen = _in_mlflow_venv(py, ctx, base, "mlflow-make", str(db), str(n), str(seed))
    section.details.append(
        f"generating {n:,} MLflow runs: {fmt_seconds(gen['seconds'])} (create_run + log_batch "
        f"each; the database made first in {fmt_seconds(gen['create_s'])}); MLflow {gen['version']}"
    )
    log(f"filter-vs-mlflow: timing ({rs.reps_fast} repetitions, in MLflow's python)")
    out = _in_mlflow_venv(py, ctx, base, "mlflow-time", str(db), str(proj), str(rs.reps_fast))
    if out["datmo_matches"] != out["mlflow_matches"]:
        raise AssertionError(
            f"datmo found {out['datmo_matches']} runs and MLflow {out['mlflow_matches']}"
        )
    s = Samples(out["values"])
    mlflow_s = s.median("mlflow")
    section.rows = [
        Row(
            label,
            "speedup",
            10.0,
            s.median("datmo"),
            mlflow_s,
            f"mlflow.search_runs {fmt_seconds(mlflow_s)}",
        )
    ]
    section.details += [
        f"both answer {out['datmo_matches']:,} runs; datmo: `run.ls(ctx, {FILTER!r})` (project "
        f'opened once); MLflow: `mlflow.search_runs(filter_string="{MLFLOW_FILTER}")` on '
        "sqlite:///mlflow.db, both in one process, interleaved, after one warm-up call each",
        *(f"{name}: {s.spread(name)}" for name in s.values),
    ]
    if not ctx.keep:
        remove(base)
    return section


# -- the MLflow side, run in MLflow's virtualenv: python -m benchmarks.runs ... ----------


def _mlflow_make(db: str, n: int, seed: int) -> dict[str, Any]:
    mlflow: Any = importlib.import_module("mlflow")
    entities: Any = importlib.import_module("mlflow.entities")
    tracking: Any = importlib.import_module("mlflow.tracking")
    started = time.perf_counter()  # the client makes the database (its migrations) here
    client = tracking.MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.create_experiment("bench")
    create_s = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(n):
        config, metrics = run_values(i, seed)
        at = int((_EPOCH + timedelta(seconds=60 * i)).timestamp() * 1000)
        created = client.create_run(experiment, start_time=at, run_name=f"bench-run-{i}")
        client.log_batch(
            created.info.run_id,
            metrics=[entities.Metric(k, v, at, 0) for k, v in metrics.items()],
            params=[entities.Param(k, str(v)) for k, v in config.items()],
        )
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "create_s": create_s, "version": mlflow.__version__}


def _mlflow_time(db: str, proj: str, reps: int) -> dict[str, Any]:
    from datmo.core.controller import run as runs
    from datmo.core.controller.project import open_project

    mlflow: Any = importlib.import_module("mlflow")
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    experiment = mlflow.get_experiment_by_name("bench").experiment_id
    ctx = open_project(Path(proj))
    found: dict[str, int] = {}

    def datmo_step() -> dict[str, float]:
        started = time.perf_counter()
        answer = runs.ls(ctx, FILTER)
        elapsed = time.perf_counter() - started
        found["datmo"] = len(answer)
        return {"datmo": elapsed}

    def mlflow_step() -> dict[str, float]:
        started = time.perf_counter()
        frame = mlflow.search_runs(experiment_ids=[experiment], filter_string=MLFLOW_FILTER)
        elapsed = time.perf_counter() - started
        found["mlflow"] = len(frame)
        return {"mlflow": elapsed}

    s = interleaved({"datmo": datmo_step, "mlflow": mlflow_step}, reps)
    return {"values": s.values, "datmo_matches": found["datmo"], "mlflow_matches": found["mlflow"]}


def main(argv: list[str]) -> int:
    if argv[:1] == ["mlflow-make"] and len(argv) == 4:
        answer = _mlflow_make(argv[1], int(argv[2]), int(argv[3]))
    elif argv[:1] == ["mlflow-time"] and len(argv) == 4:
        answer = _mlflow_time(argv[1], argv[2], int(argv[3]))
    else:
        print(
            "usage: python -m benchmarks.runs mlflow-make DB N SEED | mlflow-time DB PROJECT REPS"
        )
        return 2
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
