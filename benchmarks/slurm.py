"""Runs on Slurm, against the one-node cluster of scripts/slurm.sh.

- submit: `datmo sweep "true" -c i=range(20) --executor slurm` (submits and returns)
  against one `sbatch --array=0-19` of the same command plus one `datmo run --executor
  local true` (what datmo costs for one run): datmo must not submit job by job.
- makespan: 20 one-second tasks, two at a time: `datmo sweep ... --parallel 2` to its
  exit, against the plain `sbatch --array=0-19%2` of the same command, timed from its
  submission until squeue no longer lists it.
- ls: `datmo ls --limit 20` while 20 runs on Slurm are RUNNING (in the `shared`
  partition, where jobs share the node's CPUs) against 20 finished ones.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from benchmarks.context import Context
from benchmarks.harness import Row, Section, Skip, Step, fmt_seconds, interleaved, log, run, timed
from benchmarks.tools import remove

CONF = Path(os.environ.get("DATMO_SLURM_DIR", "/var/lib/datmo-slurm")) / "slurm.conf"


def _env(ctx: Context) -> dict[str, str]:
    if not CONF.is_file():
        raise Skip("no Slurm here (bash scripts/slurm.sh start)")
    env = {**ctx.tools.env, "SLURM_CONF": str(CONF)}
    try:
        run(["sinfo", "-h"], env=env)
    except Exception as e:
        raise Skip(f"Slurm does not answer: {e}") from e
    return env


def _project(ctx: Context, proj: Path, env: dict[str, str]) -> None:
    remove(proj)
    proj.mkdir(parents=True)
    for i in range(20):
        (proj / f"mod_{i}.py").write_text(f"X = {i}\n")
    run(ctx.tools.datmo_cmd("init", "--executor", "slurm"), cwd=proj, env=env)
    run(ctx.tools.datmo_cmd("snapshot", "create", "-m", "code"), cwd=proj, env=env)


def _gone(job: str, env: dict[str, str]) -> bool:
    out = run(["squeue", "-h", "-j", job, "-o", "%i"], env=env).stdout.decode().strip()
    return not out


def _wait_gone(job: str, env: dict[str, str], limit: float = 600) -> None:
    deadline = time.monotonic() + limit
    while not _gone(job, env):
        if time.monotonic() > deadline:
            raise RuntimeError(f"Slurm job {job} did not end in {limit:.0f} s")
        time.sleep(0.05)


def _cancel_all(env: dict[str, str]) -> None:
    run(["scancel", "--name=wrap"], env=env)
    out = run(["squeue", "-h", "-o", "%A %j"], env=env).stdout.decode()
    mine = sorted({line.split()[0] for line in out.splitlines() if " datmo-" in f" {line}"})
    if mine:
        run(["scancel", *mine], env=env)


def bench(ctx: Context) -> Section:
    env = _env(ctx)
    n = ctx.sizes.sweep_runs
    base = ctx.workdir / "slurm"
    proj = base / "proj"
    _project(ctx, proj, env)
    section = Section(f"Runs on Slurm (the one-node cluster of scripts/slurm.sh), {n} runs")
    try:
        _submit(ctx, proj, env, n, section)
        _makespan(ctx, proj, env, n, section)
        _listing(ctx, base, env, n, section)
    finally:
        _cancel_all(env)
        if not ctx.keep:
            remove(base)
    return section


def _submit(ctx: Context, proj: Path, env: dict[str, str], n: int, section: Section) -> None:
    tools = ctx.tools
    sweep = tools.datmo_cmd("sweep", "true", "-c", f"i=range({n})", "--executor", "slurm")
    plain = ["sbatch", "--parsable", f"--array=0-{n - 1}", "-o", "/dev/null", "--wrap", "true"]
    one = tools.datmo_cmd("run", "--executor", "local", "true")

    def datmo_step() -> dict[str, float]:
        took = timed(sweep, cwd=proj, env=env)
        _cancel_all(env)
        return {"datmo sweep submit": took}

    def plain_step() -> dict[str, float]:
        took = timed(plain, env=env)
        _cancel_all(env)
        return {"sbatch --array": took}

    steps: dict[str, Step] = {
        "datmo": datmo_step,
        "sbatch": plain_step,
        "run": lambda: {"datmo run true": timed(one, cwd=proj, env=env)},
    }
    log(f"slurm: submitting {n} runs ({ctx.sizes.reps} repetitions)")
    s = interleaved(steps, ctx.sizes.reps)
    ref = s.median("sbatch --array") + s.median("datmo run true")
    section.rows.append(
        Row(
            f"submitting a {n}-run sweep to Slurm (`datmo sweep --executor slurm`)",
            "max",
            1.5,
            s.median("datmo sweep submit"),
            ref,
            f"`sbatch --array=0-{n - 1}` {fmt_seconds(s.median('sbatch --array'))} + one "
            f"`datmo run true` {fmt_seconds(s.median('datmo run true'))}",
        )
    )
    section.details += [f"{name}: {s.spread(name)}" for name in s.values]


def _makespan(ctx: Context, proj: Path, env: dict[str, str], n: int, section: Section) -> None:
    tools = ctx.tools
    sweep = tools.datmo_cmd(
        "sweep", "sleep 1", "-c", f"i=range({n})", "--executor", "slurm", "--parallel", "2"
    )

    def datmo_step() -> dict[str, float]:
        return {"datmo sweep": timed(sweep, cwd=proj, env=env)}

    def plain_step() -> dict[str, float]:
        start = time.perf_counter()
        argv = ["sbatch", "--parsable", f"--array=0-{n - 1}%2", "-o", "/dev/null"]
        job = run([*argv, "--wrap", "sleep 1"], env=env).stdout.decode().strip()
        _wait_gone(job, env)
        return {"sbatch --array %2": time.perf_counter() - start}

    reps = 3 if n >= 20 else 1
    log(f"slurm: makespan of {n} one-second tasks, two at a time ({reps} repetitions)")
    s = interleaved({"datmo": datmo_step, "plain": plain_step}, reps, warmup=0)
    section.rows.append(
        Row(
            f"makespan of {n} x `sleep 1`, two at a time (`datmo sweep --parallel 2`)",
            "max",
            1.2,
            s.median("datmo sweep"),
            s.median("sbatch --array %2"),
            f"`sbatch --array=0-{n - 1}%2` until squeue no longer lists it "
            f"{fmt_seconds(s.median('sbatch --array %2'))}",
        )
    )
    section.details += [f"{name}: {s.spread(name)}" for name in s.values]


def _listing(ctx: Context, base: Path, env: dict[str, str], n: int, section: Section) -> None:
    tools = ctx.tools
    busy, done = base / "busy", base / "done"
    for proj in (busy, done):
        _project(ctx, proj, env)
    run(
        tools.datmo_cmd("sweep", "true", "-c", f"i=range({n})", "--parallel", "4"),
        cwd=done,
        env=env,
    )
    long = ["sweep", "sleep 600", "-c", f"i=range({n})", "--partition", "shared", "-d"]
    run(tools.datmo_cmd(*long), cwd=busy, env=env)
    ls = tools.datmo_cmd("ls", "--limit", "20", "--format", "json")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = [r["status"] for r in json.loads(run(ls, cwd=busy, env=env).stdout)]
        if states.count("RUNNING") == n:
            break
        time.sleep(0.5)
    else:
        raise RuntimeError(f"not all {n} runs on Slurm started: {states}")
    table = tools.datmo_cmd("ls", "--limit", "20")
    steps: dict[str, Step] = {
        "busy": lambda: {"ls running": timed(table, cwd=busy, env=env)},
        "done": lambda: {"ls finished": timed(table, cwd=done, env=env)},
    }
    log(f"slurm: datmo ls with {n} runs RUNNING on Slurm ({ctx.sizes.reps} repetitions)")
    s = interleaved(steps, ctx.sizes.reps)
    section.rows.append(
        Row(
            f"`datmo ls --limit 20` while {n} runs on Slurm are RUNNING vs {n} finished",
            "max",
            1.2,
            s.median("ls running"),
            s.median("ls finished"),
            f"{n} finished {fmt_seconds(s.median('ls finished'))}",
        )
    )
    section.details += [f"{name}: {s.spread(name)}" for name in s.values]
