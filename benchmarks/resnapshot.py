"""Re-snapshot of an unchanged project, against `git status` and `dvc status` on the same tree.

The git reference is a real repository in the project folder itself (same files,
same inodes, same page cache), with everything committed and a warm index;
only `/.datmo/` is excluded from it, through `.git/info/exclude`, as datmo leaves
out `.git`. DVC gets a byte-identical copy of the tree (`dvc add` rewrites the
folder it tracks) with every top-level entry added, and its status is measured
once its state cache is warm.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.context import Context
from benchmarks.harness import (
    Row,
    Samples,
    Section,
    Step,
    fmt_bytes,
    fmt_seconds,
    interleaved,
    log,
    run,
    timed,
)
from benchmarks.tools import du_bytes, ensure_dvc, git, remove, sync, version_of
from benchmarks.trees import TreeSpec, make_tree, top_level, wait_until_settled

SAME = "same"
MB = 1_000_000


@dataclass(frozen=True)
class Scale:
    name: str
    spec: Callable[[Context], TreeSpec]
    git_target: float  # datmo / reference at most this
    with_startup: bool  # the reference also has one `python -c "import click"`
    growth_target: bool  # this scale checks that .datmo does not grow (large files)


BIG = Scale("resnapshot-2gb", lambda c: c.sizes.big_tree, 1.5, True, True)
MANY = Scale("resnapshot-100k", lambda c: c.sizes.many_files, 3.0, False, False)


def bench(ctx: Context, scale: Scale) -> Section:
    spec = scale.spec(ctx)
    tools = ctx.tools
    env = tools.env
    base = ctx.workdir / scale.name
    remove(base)
    proj, dvc_proj = base / "project", base / "dvc-project"
    section = Section(f"Re-snapshot of an unchanged project: {spec.describe()}")
    details = section.details
    log(f"{scale.name}: writing {spec.describe()} ({fmt_bytes(spec.total_bytes)})")
    last_write = make_tree(proj, spec)
    dvc, dvc_skip = ensure_dvc(ctx.workdir)
    if dvc is not None:
        run(["cp", "-a", proj, dvc_proj])

    log(f"{scale.name}: git repository, datmo project, first snapshot")
    run(git("init", "-q"), cwd=proj, env=env)
    (proj / ".git" / "info" / "exclude").write_text("/.datmo/\n")
    run(git("add", "-A"), cwd=proj, env=env)
    run(git("commit", "-q", "-m", "tree"), cwd=proj, env=env)
    run(tools.datmo_cmd("init"), cwd=proj, env=env)
    wait_until_settled(last_write)
    started = time.perf_counter()
    first_id = run(tools.datmo_cmd("snapshot", "create", "-m", SAME), cwd=proj, env=env)
    first_s = time.perf_counter() - started
    current = first_id.stdout.decode().strip()
    details.append(f"first snapshot (not timed against anything): {fmt_seconds(first_s)}")
    details.append(f"`.datmo` after it: {fmt_bytes(du_bytes(proj / '.datmo'))}")
    for _ in range(2):  # git refreshes the racily-clean entries of its index, then it is warm
        run(["git", "status"], cwd=proj, env=env)

    if dvc is not None:
        log(f"{scale.name}: dvc init, dvc add (this takes a while)")
        dvc_env = env
        run([dvc, "init", "--no-scm", "-q"], cwd=dvc_proj, env=dvc_env)
        run([dvc, "config", "core.site_cache_dir", base / "dvc-site-cache"], cwd=dvc_proj, env=env)
        run([dvc, "config", "core.analytics", "false"], cwd=dvc_proj, env=env)
        started = time.perf_counter()
        run([dvc, "add", "-q", *top_level(dvc_proj)], cwd=dvc_proj, env=env)
        added = fmt_seconds(time.perf_counter() - started)
        details.append(f"`dvc add` of the tree (not timed against anything): {added}")
        for _ in range(2):
            run([dvc, "status", "-q"], cwd=dvc_proj, env=env)
        details.append(f"DVC: {version_of([str(dvc), '--version'])}")

    # Same message: datmo finds nothing changed and returns the current id, writing no record.
    def datmo_same() -> dict[str, float]:
        t = timed(tools.datmo_cmd("snapshot", "create", "-m", SAME), cwd=proj, env=env)
        return {"datmo same": t}

    def check_same() -> dict[str, float]:  # warm-up run that also checks the claim above
        out = run(tools.datmo_cmd("snapshot", "create", "-m", SAME), cwd=proj, env=env)
        if out.stdout.decode().strip() != current:
            raise AssertionError("a re-snapshot with the same message made a new snapshot")
        return {}

    refs: dict[str, Step] = {}
    if scale.with_startup:
        refs["click"] = lambda: {"click": timed(tools.python_cmd("import click"), env=env)}
    refs["git status"] = lambda: {"git status": timed(["git", "status"], cwd=proj, env=env)}
    steps_same: dict[str, Step] = {**refs, "datmo same": datmo_same}
    if dvc is not None:
        steps_same["dvc status"] = lambda: {
            "dvc status": timed([dvc, "status", "-q"], cwd=dvc_proj, env=env)
        }
    sync()  # nothing written above (dvc add's cache) may be flushed during the timings
    check_same()
    records_before = len(list((proj / ".datmo" / "snapshots").iterdir()))
    log(f"{scale.name}: timing, same message ({ctx.sizes.reps} repetitions)")
    same = interleaved(steps_same, ctx.sizes.reps)
    check_same()
    if len(list((proj / ".datmo" / "snapshots").iterdir())) != records_before:
        raise AssertionError("re-snapshots with the same message wrote new records")

    counter = itertools.count()

    def datmo_new() -> dict[str, float]:
        before = du_bytes(proj / ".datmo")
        msg = f"run {next(counter)}"
        t = timed(tools.datmo_cmd("snapshot", "create", "-m", msg), cwd=proj, env=env)
        return {"datmo new": t, "growth": du_bytes(proj / ".datmo") - before}

    log(f"{scale.name}: timing, a new message each time ({ctx.sizes.reps} repetitions)")
    new = interleaved({**refs, "datmo new": datmo_new}, ctx.sizes.reps)

    section.rows += _rows(scale, spec, same, new, dvc_skip)
    for name in (*refs, "datmo same", "dvc status"):
        if name in same.values:
            details.append(f"{name} (same-message block): {same.spread(name)}")
    details.append(f"datmo, new message each time: {new.spread('datmo new')}")
    growth = new.values["growth"]
    details.append(
        "`.datmo` growth per re-snapshot with a new message: "
        + ", ".join(fmt_bytes(g) for g in growth)
    )
    if not ctx.keep:
        remove(base)
    return section


def _reference(scale: Scale, s: Samples) -> tuple[float, str]:
    git_s = s.median("git status")
    if scale.with_startup:
        click = s.median("click")
        ref = click + 2 * git_s
        parts = f"import click {fmt_seconds(click)} + 2 x git status {fmt_seconds(git_s)}"
        return ref, f"{fmt_seconds(ref)} = {parts}"
    return git_s, f"git status {fmt_seconds(git_s)}"


def _rows(scale: Scale, spec: TreeSpec, same: Samples, new: Samples, dvc_skip: str) -> list[Row]:
    what = f"re-snapshot of unchanged {spec.label()}"
    ref, ref_text = _reference(scale, same)
    datmo_same = same.median("datmo same")
    label = "(import click + 2 x git status)" if scale.with_startup else "git status"
    rows = [
        Row(f"{what}, same message, vs {label}", "max", scale.git_target, datmo_same, ref, ref_text)
    ]
    dvc_row = Row(f"{what}, same message, vs dvc status", "speedup", 10.0, datmo_same)
    if dvc_skip:
        dvc_row.skipped = dvc_skip
    else:
        dvc_s = same.median("dvc status")
        dvc_row.reference, dvc_row.reference_text = dvc_s, f"dvc status {fmt_seconds(dvc_s)}"
    rows.append(dvc_row)
    ref_new, ref_new_text = _reference(scale, new)
    rows.append(
        Row(
            f"{what}, new message each time (a new record), vs {label}",
            "info",
            scale.git_target,
            new.median("datmo new"),
            ref_new,
            ref_new_text,
        )
    )
    if scale.growth_target:
        grew = max(new.values["growth"])
        big = fmt_bytes(spec.big_files * spec.big_bytes)
        rows.append(
            Row(
                f"`.datmo` growth, re-snapshot of unchanged large files ({big}), new message",
                "max",
                1.0,
                grew,
                MB,
                "1 MB",
                unit="B",
            )
        )
    return rows
