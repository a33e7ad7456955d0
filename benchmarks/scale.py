"""Snapshots at scale (issue 17): 100,000 small files, one of them changed, a 1 GB data set.

Every datmo figure ends with a timed `sync`, as every reference does, so both sides
pay for durability alike; an untimed `sync` runs before each figure so none pays for
another's write-back. Trees are written once, aged past datmo's and git's
racy-timestamp windows, and stay in the page cache. The git references run in a
byte-identical copy (`cp -a`), never in datmo's tree. A whole warm-up repetition would
take minutes here, so a tiny project is snapshotted and checked out first instead:
that compiles the bytecode of every command timed.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.context import Context
from benchmarks.harness import (
    Row,
    Samples,
    Section,
    fmt_bytes,
    fmt_seconds,
    interleaved,
    log,
    run,
    timed,
)
from benchmarks.tools import B3SUM, du_bytes, git, remove, sync
from benchmarks.trees import wait_until_settled

TIME = "/usr/bin/time"  # GNU time (Debian's `time`); -v reports the peak RSS
RSS_LIMIT = 300_000_000
SYNC = ["sync"]
CREATE = ("datmo create", "sync (datmo)")  # datmo's figure in the snapshot rows
SUBFOLDERS, PER_FOLDER = 10, 100  # 100 top folders x 10 x 100 files at 100,000
DATA_BYTES, DATA_PER_FOLDER = 50_000, 1_000


def code_path(i: int) -> str:
    per_top = SUBFOLDERS * PER_FOLDER
    return f"pkg{i // per_top:03d}/sub{i % per_top // PER_FOLDER}/m{i % PER_FOLDER:02d}.py"


def code_body(i: int, version: int = 0) -> str:
    """About 60 bytes of Python, different in every file (no two share a blob)."""
    return f"# module {i}\ndef value_{i}(x):\n    return x * {version + 3} + {i}\n"


def write_code_tree(root: Path, n: int) -> float:
    """n small .py files under root; returns time.time() after the last write."""
    made: set[Path] = set()
    for i in range(n):
        path = root / code_path(i)
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_text(code_body(i))
    return time.time()


def data_paths(n: int) -> list[str]:
    return [f"data/part{i // DATA_PER_FOLDER:02d}/x{i:05d}.bin" for i in range(n)]


def write_dataset(root: Path, n: int, seed: int = 17) -> float:
    """n files of 50 kB of seeded random bytes: incompressible, with NUL bytes as any
    binary data has (so nothing can pass them for text)."""
    rng = random.Random(seed)
    for rel in data_paths(n):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(DATA_BYTES))
    if b"\0" not in (root / data_paths(1)[0]).read_bytes():
        raise AssertionError("a random data file without a NUL byte: change the seed")
    return time.time()


def bench_first(ctx: Context) -> Section:
    n, tools, env = ctx.sizes.scale_files, ctx.tools, ctx.tools.env
    base = _scratch(ctx, "scale-first")
    proj, repo = base / "project", base / "git-copy"
    section = Section(f"First snapshot of {n:,} small .py files")
    last_write = _code_trees(section, proj, repo, n)
    _warm_up(ctx, base)
    wait_until_settled(last_write)
    report = base / "time-v.txt"
    wrap = [TIME, "-v", "-o", str(report)] if os.access(TIME, os.X_OK) else []

    def datmo_first() -> dict[str, float]:
        remove(proj / ".datmo")
        run(tools.datmo_cmd("init"), cwd=proj, env=env)
        sync()
        create = tools.datmo_cmd("snapshot", "create", "-m", "first")
        figures = {"datmo create": timed([*wrap, *create], cwd=proj, env=env)}
        figures["sync (datmo)"] = timed(SYNC)
        if wrap:
            figures["datmo peak RSS"] = _peak_rss(report)
        return figures

    def git_first() -> dict[str, float]:
        remove(repo / ".git")
        sync()
        return {
            "git init": timed(_git("init", "-q"), cwd=repo, env=env),
            "git add -A": timed(_git("add", "-A"), cwd=repo, env=env),
            "git commit": timed(_git("commit", "-q", "-m", "first"), cwd=repo, env=env),
            "sync (git)": timed(SYNC),
        }

    log(f"scale-first: timing ({ctx.sizes.reps_scale} repetitions)")
    s = interleaved({"datmo": datmo_first, "git": git_first}, ctx.sizes.reps_scale, warmup=0)

    what = f"first snapshot of {n:,} small .py files ({fmt_bytes(_code_bytes(n))})"
    name = f"{what}: `datmo snapshot create` + sync vs (git init + add -A + commit + sync)"
    git_parts = ("git init", "git add -A", "git commit", "sync (git)")
    section.rows.append(_row(s, name, 1.5, CREATE, git_parts))
    rss = Row(
        f"{what}: datmo's peak RSS (/usr/bin/time -v, the most of any repetition)",
        "max",
        1.0,
        reference=RSS_LIMIT,
        reference_text=fmt_bytes(RSS_LIMIT),
        unit="B",
    )
    if wrap:
        rss.datmo = max(s.values["datmo peak RSS"])
    else:
        rss.skipped = f"skipped: {TIME} is missing (apt-get install time, or make sysdeps)"
    section.rows.append(rss)
    section.details += [
        "each repetition removes `.datmo` (or `.git`) and runs `datmo init` (or nothing) "
        "untimed; datmo's snapshot runs under /usr/bin/time -v, whose peak RSS is that of "
        "the largest process: datmo's, or a git it ran",
        *_spreads(s),
        f"`.datmo` after it: {fmt_bytes(du_bytes(proj / '.datmo'))}; "
        f"`.git`: {fmt_bytes(du_bytes(repo / '.git'))}",
    ]
    _done(ctx, base)
    return section


def bench_change(ctx: Context) -> Section:
    n, tools, env = ctx.sizes.scale_files, ctx.tools, ctx.tools.env
    reps = ctx.sizes.reps_scale_change
    base = _scratch(ctx, "scale-change")
    proj, repo = base / "project", base / "git-copy"
    section = Section(f"One file changed among {n:,} small .py files")
    last_write = _code_trees(section, proj, repo, n)
    _warm_up(ctx, base)
    wait_until_settled(last_write)
    log("scale-change: first snapshot and commit (untimed)")
    run(_git("init", "-q"), cwd=repo, env=env)
    run(_git("add", "-A"), cwd=repo, env=env)
    run(_git("commit", "-q", "-m", "first"), cwd=repo, env=env)
    run(["git", "status"], cwd=repo, env=env)  # refreshes the racily-clean index entries
    run(tools.datmo_cmd("init"), cwd=proj, env=env)
    started = time.perf_counter()
    run(tools.datmo_cmd("snapshot", "create", "-m", "first"), cwd=proj, env=env)
    first_s = time.perf_counter() - started

    def datmo_step(msg: str) -> dict[str, float]:
        sync()
        create = timed(tools.datmo_cmd("snapshot", "create", "-m", msg), cwd=proj, env=env)
        return {"datmo create": create, "sync (datmo)": timed(SYNC)}

    def git_step(msg: str) -> dict[str, float]:
        sync()
        return {
            "git add -A": timed(_git("add", "-A"), cwd=repo, env=env),
            "git commit": timed(_git("commit", "-q", "-m", msg), cwd=repo, env=env),
            "sync (git)": timed(SYNC),
        }

    # The change comes before both steps of a repetition, so harness.interleaved (which
    # runs each step on its own) does not fit; the order still rotates.
    log(f"scale-change: timing ({reps} repetitions after one warm-up)")
    steps: list[Callable[[str], dict[str, float]]] = [datmo_step, git_step]
    s, changed = Samples(), []
    for rep in range(reps + 1):  # rep 0: the warm-up, not kept
        i = (rep * 7919 + 11) % n
        changed.append(code_path(i))
        for root in (proj, repo):
            (root / code_path(i)).write_text(code_body(i, version=rep + 1))
        wait_until_settled(time.time())
        for step in steps[rep % 2 :] + steps[: rep % 2]:
            figures = step(f"change {rep}")
            if rep:
                s.add(figures)
    listed = run(tools.datmo_cmd("snapshot", "ls", "--format", "json"), cwd=proj, env=env)
    if len(json.loads(listed.stdout)) != reps + 2:
        raise AssertionError("a changed file did not make a new snapshot every time")

    what = f"one file changed among {n:,} small .py files"
    name = f"{what}: `datmo snapshot create` + sync vs (git add -A + commit + sync)"
    git_parts = ("git add -A", "git commit", "sync (git)")
    section.rows.append(_row(s, name, 1.5, CREATE, git_parts))
    section.details += [
        f"first snapshot (untimed, before the repetitions): {fmt_seconds(first_s)}",
        "each repetition rewrites one file (a different one each time) in both trees, "
        "waits 2.5 s, then times both; changed: " + ", ".join(changed[1:]),
        *_spreads(s),
    ]
    _done(ctx, base)
    return section


def bench_dataset(ctx: Context) -> Section:
    n, tools, env = ctx.sizes.dataset_files, ctx.tools, ctx.tools.env
    base = _scratch(ctx, "scale-dataset")
    proj, copy = base / "project", base / "copy"
    section = Section(f"First snapshot of a data set: {_data_text(n)}")
    last_write = _data_tree(section, proj, n)
    _warm_up(ctx, base)
    wait_until_settled(last_write)
    paths = data_paths(n)

    def datmo_first() -> dict[str, float]:
        remove(proj / ".datmo")
        run(tools.datmo_cmd("init"), cwd=proj, env=env)
        sync()
        create = timed(tools.datmo_cmd("snapshot", "create", "-m", "data"), cwd=proj, env=env)
        return {"datmo create": create, "sync (datmo)": timed(SYNC)}

    def b3sum() -> dict[str, float]:
        sync()
        return {"b3sum": timed([*B3SUM, *paths], cwd=proj)}

    def cp_sync() -> dict[str, float]:
        remove(copy)
        sync()
        return {"cp -r": timed(["cp", "-r", proj / "data", copy]), "sync (cp)": timed(SYNC)}

    log(f"scale-dataset: timing ({ctx.sizes.reps_scale} repetitions)")
    steps = {"datmo": datmo_first, "b3sum": b3sum, "cp": cp_sync}
    s = interleaved(steps, ctx.sizes.reps_scale, warmup=0)

    what = f"first snapshot of {_data_text(n)}"
    name = f"{what}: `datmo snapshot create` + sync vs (b3sum + cp -r + sync)"
    ref_parts = ("b3sum", "cp -r", "sync (cp)")
    section.rows.append(_row(s, name, 1.5, CREATE, ref_parts))
    rate = n * DATA_BYTES / _total(s, *CREATE)[0] / 1e6
    section.details += [
        "each repetition removes `.datmo` and runs `datmo init` untimed; "
        "b3sum hashes every file in one single-threaded process",
        *_spreads(s),
        f"datmo: {rate:,.0f} MB/s (create + sync); "
        f"`.datmo` after it: {fmt_bytes(du_bytes(proj / '.datmo'))}",
    ]
    _done(ctx, base)
    return section


def bench_checkout(ctx: Context) -> Section:
    n, tools, env = ctx.sizes.dataset_files, ctx.tools, ctx.tools.env
    base = _scratch(ctx, "scale-checkout")
    proj, out, copy = base / "project", base / "checkout", base / "copy"
    section = Section(f"Checkout of a data set into an empty folder: {_data_text(n)}")
    last_write = _data_tree(section, proj, n)
    _warm_up(ctx, base)
    wait_until_settled(last_write)
    log("scale-checkout: the data set's snapshot (untimed)")
    run(tools.datmo_cmd("init"), cwd=proj, env=env)
    started = time.perf_counter()
    made = run(tools.datmo_cmd("snapshot", "create", "-m", "data"), cwd=proj, env=env)
    first_s = time.perf_counter() - started
    snap = made.stdout.decode().strip()

    def datmo_checkout() -> dict[str, float]:
        remove(out)
        out.mkdir()
        sync()
        argv = tools.datmo_cmd("snapshot", "checkout", snap, "--to", str(out))
        return {"datmo checkout": timed(argv, cwd=proj, env=env), "sync (datmo)": timed(SYNC)}

    def cp_sync() -> dict[str, float]:
        remove(copy)
        copy.mkdir()
        sync()
        return {"cp -r": timed(["cp", "-r", proj / "data", copy]), "sync (cp)": timed(SYNC)}

    reps = ctx.sizes.reps_scale
    log(f"scale-checkout: timing ({reps} repetitions)")
    s = interleaved({"datmo": datmo_checkout, "cp": cp_sync}, reps, warmup=0)
    run(["diff", "-r", "-q", proj / "data", out / "data"])  # the same bytes came back

    what = f"checkout of {_data_text(n)} into an empty folder"
    name = f"{what}: `datmo snapshot checkout --to` + sync vs (cp -r + sync)"
    section.rows.append(
        _row(s, name, 1.3, ("datmo checkout", "sync (datmo)"), ("cp -r", "sync (cp)"))
    )
    section.details += [
        f"the data set's snapshot (untimed, before the repetitions): {fmt_seconds(first_s)}",
        "each repetition removes the folder written before and makes it again, empty; "
        "`diff -r` checks the last checkout against the data set",
        *_spreads(s),
    ]
    _done(ctx, base)
    return section


def _git(*args: str) -> list[str]:
    # No automatic gc: after a commit of 100,000 loose objects git starts one in the
    # background, which would race the next repetition (and take a core from it).
    return git("-c", "gc.auto=0", *args)


def _scratch(ctx: Context, name: str) -> Path:
    base = ctx.workdir / name
    remove(base)
    base.mkdir(parents=True)
    return base


def _done(ctx: Context, base: Path) -> None:
    if not ctx.keep:
        remove(base)


def _code_bytes(n: int) -> int:
    return sum(len(code_body(i)) for i in range(n))


def _code_trees(section: Section, proj: Path, repo: Path, n: int) -> float:
    """datmo's tree and git's byte-identical copy; returns the time of the last write."""
    log(f"{section.title}: writing the trees")
    started = time.perf_counter()
    last_write = write_code_tree(proj, n)
    run(["cp", "-a", proj, repo])
    sync()
    folders = -(-n // (SUBFOLDERS * PER_FOLDER))
    section.details.append(
        f"tree: {n:,} .py files of ~{_code_bytes(n) / n:.0f} bytes ({fmt_bytes(_code_bytes(n))}), "
        f"{PER_FOLDER} a folder, {folders} top folders x {SUBFOLDERS} subfolders; "
        f"written, copied and synced in {fmt_seconds(time.perf_counter() - started)}"
    )
    return last_write


def _data_text(n: int) -> str:
    return f"{n:,} random files of {DATA_BYTES / 1e3:.0f} kB ({fmt_bytes(n * DATA_BYTES)})"


def _data_tree(section: Section, proj: Path, n: int) -> float:
    log(f"{section.title}: writing the data set")
    started = time.perf_counter()
    last_write = write_dataset(proj, n)
    sync()
    section.details.append(
        f"data set: {_data_text(n)} under data/, {DATA_PER_FOLDER:,} a folder (seeded random "
        f"bytes); written and synced in {fmt_seconds(time.perf_counter() - started)}"
    )
    return last_write


def _warm_up(ctx: Context, base: Path) -> None:
    """Snapshot and check out a tiny project: compiles the bytecode of the timed commands."""
    proj, out = base / "warm-up", base / "warm-up-out"
    proj.mkdir()
    (proj / "train.py").write_text("print('warm-up')\n")
    (proj / "weights.bin").write_bytes(bytes(range(256)) * 64)
    env = ctx.tools.env
    run(ctx.tools.datmo_cmd("init"), cwd=proj, env=env)
    made = run(ctx.tools.datmo_cmd("snapshot", "create", "-m", "warm-up"), cwd=proj, env=env)
    snap = made.stdout.decode().strip()
    run(ctx.tools.datmo_cmd("snapshot", "checkout", snap, "--to", str(out)), cwd=proj, env=env)
    remove(proj)
    remove(out)


def _peak_rss(report: Path) -> float:
    """Bytes, from GNU time's "Maximum resident set size (kbytes): N"."""
    for line in report.read_text().splitlines():
        if "Maximum resident set size" in line:
            return int(line.rsplit(":", 1)[1]) * 1024
    raise AssertionError(f"no peak RSS in {report}")


def _row(s: Samples, name: str, target: float, datmo: tuple[str, ...], ref: tuple[str, ...]) -> Row:
    """datmo against the reference, each the sum of its parts' medians."""
    ref_s, text = _total(s, *ref)
    return Row(name, "max", target, _total(s, *datmo)[0], ref_s, text)


def _total(s: Samples, *parts: str) -> tuple[float, str]:
    """The sum of the parts' medians, and how it is made up."""
    medians = [(p, s.median(p)) for p in parts]
    total = sum(m for _, m in medians)
    terms = " + ".join(f"{p} {fmt_seconds(m)}" for p, m in medians)
    return total, f"{fmt_seconds(total)} = {terms}"


def _spreads(s: Samples) -> list[str]:
    out = []
    for name, values in s.values.items():
        if name.endswith("RSS"):
            low, high = fmt_bytes(min(values)), fmt_bytes(max(values))
            mid = fmt_bytes(statistics.median(values))
            out.append(f"{name}: median {mid} (min {low}, max {high}, n={len(values)})")
        else:
            out.append(f"{name}: {s.spread(name)}")
    return out
