"""Many runs at once: sweep makespans, working copies, staging, and DVC's queue.

- makespan: `datmo sweep "sleep 1" -c i=range(20) --parallel K` against ceil(20/K) x 1 s
  plus one `datmo run --executor local "true"` (what one run costs datmo) timed in the
  same run: a persistent worker must not pay a whole `datmo run` per run.
- working copy: filling a run's working copy of a 2 GB / 2,000-file project, against
  `cp -r` (`--reflink=always` on XFS) of the same tree, timed in one worker process the
  way a queue worker fills one copy after another.
- staging: 1,000 runs staged by one sweep, then `queue ls` and `ls`, against 10 staged.
- DVC: `dvc exp run --queue` x 20 and `dvc queue start -j 2` on the same sleeps.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
from pathlib import Path

from benchmarks.context import Context
from benchmarks.harness import Row, Section, Skip, Step, fmt_seconds, interleaved, log, run, timed
from benchmarks.tools import ensure_dvc, fs_type, git, remove, sync, xfs_mount
from benchmarks.trees import make_tree

SLEEPS = 20


def _project(ctx: Context, proj: Path, files: int = 20) -> None:
    remove(proj)
    proj.mkdir(parents=True)
    for i in range(files):
        (proj / f"mod_{i}.py").write_text(f"X = {i}\n")
    run(ctx.tools.datmo_cmd("init"), cwd=proj, env=ctx.tools.env)
    run(ctx.tools.datmo_cmd("snapshot", "create", "-m", "code"), cwd=proj, env=ctx.tools.env)


# -- makespan -----------------------------------------------------------------------


def bench_makespan(ctx: Context) -> Section:
    tools, env = ctx.tools, ctx.tools.env
    base = ctx.workdir / "queue-makespan"
    proj = base / "proj"
    _project(ctx, proj)
    n = ctx.sizes.sweep_runs
    reps = 3 if n >= SLEEPS else 1
    section = Section(f"Makespan of a sweep of {n} one-second local runs")

    def sweep(k: int) -> Step:
        argv = tools.datmo_cmd(
            "sweep", "sleep 1", "-c", f"i=range({n})", "--parallel", str(k), "--executor", "local"
        )
        return lambda: {f"sweep K={k}": timed(argv, cwd=proj, env=env)}

    one_run = tools.datmo_cmd("run", "--executor", "local", "true")
    steps: dict[str, Step] = {
        "K=2": sweep(2),
        "K=4": sweep(4),
        "datmo run": lambda: {"datmo run true": timed(one_run, cwd=proj, env=env)},
    }
    log(f"queue-makespan: {reps} repetitions")
    s = interleaved(steps, reps, warmup=0)
    overhead = s.median("datmo run true")
    for k in (2, 4):
        ideal = math.ceil(n / k) * 1.0
        section.rows.append(
            Row(
                f"`datmo sweep` of {n} x `sleep 1`, --parallel {k}, local executor",
                "max",
                1.15,
                s.median(f"sweep K={k}"),
                ideal + overhead,
                f"ceil({n}/{k}) x 1 s + one `datmo run true` {fmt_seconds(overhead)}",
            )
        )
    section.details += [f"{name}: {s.spread(name)}" for name in s.values]
    dvc_row = _dvc(ctx, base, n, s.median("sweep K=2"))
    if dvc_row is not None:
        section.rows.append(dvc_row[0])
        section.details += dvc_row[1]
    if not ctx.keep:
        remove(base)
    return section


def _dvc(ctx: Context, base: Path, n: int, ours: float) -> tuple[Row, list[str]] | None:
    """DVC's queue on the same sleeps: both makespans, for reading side by side."""
    dvc, why = ensure_dvc(ctx.workdir)
    if dvc is None:
        log(f"queue-makespan: no DVC ({why})")
        return None
    proj = base / "dvc"
    remove(proj)
    proj.mkdir()
    env = {**ctx.tools.env, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b"}
    env.update(GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@b")
    # DVC's queue workers are started as `dvc` processes found on PATH.
    env["PATH"] = f"{dvc.parent}{os.pathsep}{env.get('PATH', '')}"
    for i in range(20):
        (proj / f"mod_{i}.py").write_text(f"X = {i}\n")
    (proj / "params.yaml").write_text("i: 0\n")
    (proj / "dvc.yaml").write_text(
        "stages:\n  s:\n    cmd: sleep 1 && echo ok > out.txt\n"
        "    params: [i]\n    outs: [out.txt]\n"
    )
    run(git("init", "-q"), cwd=proj, env=env)
    run([dvc, "init", "-q"], cwd=proj, env=env)
    run(git("add", "-A"), cwd=proj, env=env)
    run(git("commit", "-qm", "init"), cwd=proj, env=env)
    start = time.perf_counter()
    for i in range(n):
        run([dvc, "exp", "run", "--queue", "-S", f"i={i + 1}"], cwd=proj, env=env, timeout=300)
    queued = time.perf_counter() - start
    run([dvc, "queue", "start", "-j", "2"], cwd=proj, env=env, timeout=300)
    limit = 30 * n  # DVC's queue can hang (treeverse/dvc#8165): give up, and say so
    deadline = time.monotonic() + limit
    finished = False
    while time.monotonic() < deadline:
        out = run([dvc, "queue", "status"], cwd=proj, env=env).stdout.decode()
        if not any(w in out for w in ("Queued", "Running")):
            finished = True
            break
        time.sleep(0.5)
    total = time.perf_counter() - start
    with open(os.devnull, "wb") as null:
        subprocess.run(
            [dvc, "queue", "stop", "--kill"], cwd=proj, env=env, stdout=null, stderr=null
        )
    done = run([dvc, "queue", "status"], cwd=proj, env=env).stdout.decode()
    success = done.count("Success")
    if not finished:
        return (
            Row(
                f"DVC: `dvc exp run --queue` x {n} + `dvc queue start -j 2`",
                "info",
                1.0,
                skipped=f"DVC's queue had not finished after {limit} s ({success} of {n} done)",
            ),
            [],
        )
    return (
        Row(
            f"datmo's sweep --parallel 2 (above) vs DVC: `dvc exp run --queue` x {n} + "
            "`dvc queue start -j 2`, on the same sleeps",
            "info",
            1.0,
            ours,
            total,
            f"DVC {fmt_seconds(total)}: queueing {fmt_seconds(queued)}, {success} of {n} succeeded",
        ),
        [f"DVC makespan {fmt_seconds(total)} (of it queueing {fmt_seconds(queued)})"],
    )


# -- working copies -------------------------------------------------------------------

FILL = """
import sys, time
from datmo.core.controller import snapshot, workcopy
from datmo.core.controller.project import open_project
ctx = open_project()
snap = snapshot.get(ctx, sys.argv[1])
blobs = workcopy.Blobs()
for i in range(int(sys.argv[2])):
    t = time.perf_counter()
    rel = workcopy.make(ctx, snap, f"bench{i}", blobs)
    took = time.perf_counter() - t
    workcopy.remove(ctx, rel)
    print(took, flush=True)
"""


def bench_workcopy(ctx: Context) -> Section:
    """The working copy of a 2 GB / 2,000-file project, on this disk and on XFS."""
    section = Section("A run's working copy of a 2 GB / 2,000-file project")
    base = ctx.workdir / "queue-workcopy"
    remove(base)
    base.mkdir(parents=True)
    _workcopy(ctx, base, section, f"this disk ({fs_type(base)})", "info", [])
    spec = ctx.sizes.big_tree
    try:
        size = max(3 * spec.total_bytes, 512 << 20)  # mkfs.xfs wants 300 MB at least
        with xfs_mount(ctx.workdir / "wc-xfs.img", ctx.workdir / "wc-xfs", size) as m:
            _workcopy(ctx, m, section, "XFS with reflinks", "max", ["--reflink=always"])
    except Skip as e:
        section.rows.append(Row("working copy on XFS", "max", 1.5, skipped=f"skipped: {e}"))
    if not ctx.keep:
        remove(base)
    return section


def _workcopy(
    ctx: Context, base: Path, section: Section, where: str, kind: str, cp_opts: list[str]
) -> None:
    tools, env, spec = ctx.tools, ctx.tools.env, ctx.sizes.big_tree
    proj = base / "proj"
    remove(proj)
    make_tree(proj, spec)
    run(tools.datmo_cmd("init"), cwd=proj, env=env)
    out = run(tools.datmo_cmd("snapshot", "create", "-m", "data"), cwd=proj, env=env)
    snap = out.stdout.decode().split()[0]
    sync()
    copies = 1 + ctx.sizes.reps_big
    log(f"queue-workcopy: {copies} working copies on {where}")
    lines = run([tools.python, "-c", FILL, snap, str(copies)], cwd=proj, env=env, timeout=3600)
    took = [float(x) for x in lines.stdout.decode().split()]
    first, later = took[0], sorted(took[1:])[len(took[1:]) // 2]
    target = base / "cp-target"

    def cp() -> dict[str, float]:
        remove(target)
        t = time.perf_counter()
        run(["cp", "-r", *cp_opts, proj, target])
        return {"cp": time.perf_counter() - t}

    cps = sorted(cp()["cp"] for _ in range(3))
    remove(target)
    ref = cps[1]
    label = "cp -r " + " ".join(cp_opts) if cp_opts else "cp -r"
    section.rows.append(
        Row(
            f"working copy of {spec.describe()} on {where} (a worker's 2nd and later copies)",
            kind,
            1.5,
            later,
            ref,
            f"`{label}` of the tree {fmt_seconds(ref)}",
        )
    )
    section.details.append(
        f"{where}: first copy in a process {fmt_seconds(first)} (it checks each object's hash "
        f"once), later copies median {fmt_seconds(later)}; `{label}` {fmt_seconds(ref)}"
    )
    shutil.rmtree(proj, ignore_errors=True)


# -- staging --------------------------------------------------------------------------


def bench_staging(ctx: Context) -> Section:
    tools, env = ctx.tools, ctx.tools.env
    many = ctx.sizes.staged_runs
    few = 10
    base = ctx.workdir / "queue-staging"
    section = Section(f"{many:,} staged runs against {few}")
    projects = {}
    for n in (many, few):
        proj = base / f"p{n}"
        _project(ctx, proj)
        argv = tools.datmo_cmd("sweep", "true", "-c", f"i=range({n})", "--executor", "local")
        took = timed(argv, cwd=proj, env=env)
        section.details.append(
            f"staging {n:,} runs with one `datmo sweep`: {fmt_seconds(took)} "
            f"({took / n * 1000:.1f} ms a run)"
        )
        projects[n] = proj
    queue_one = tools.datmo_cmd("run", "--queue", "--executor", "local", "true")
    single = timed(queue_one, cwd=projects[few], env=env)
    section.details.append(f"one `datmo run --queue true`: {fmt_seconds(single)}")
    steps: dict[str, Step] = {}
    for n, proj in projects.items():
        for words in (("queue", "ls"), ("ls",)):
            argv = tools.datmo_cmd(*words, "--limit", "20")
            name = f"{' '.join(words)} {n}"
            run(argv, cwd=proj, env=env)  # the index brought up to date once
            steps[name] = (lambda a, p, nm: lambda: {nm: timed(a, cwd=p, env=env)})(
                argv, proj, name
            )
    s = interleaved(steps, ctx.sizes.reps)
    for words in ("queue ls", "ls"):
        section.rows.append(
            Row(
                f"`datmo {words} --limit 20` with {many:,} runs staged vs {few}",
                "max",
                1.2,
                s.median(f"{words} {many}"),
                s.median(f"{words} {few}"),
                f"{few} staged {fmt_seconds(s.median(f'{words} {few}'))}",
            )
        )
    section.details += [f"{name}: {s.spread(name)}" for name in s.values]
    if not ctx.keep:
        remove(base)
    return section
