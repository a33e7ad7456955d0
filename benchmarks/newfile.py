"""A new large file into a snapshot: datmo's object store against a hash and a copy.

On a filesystem without reflinks (ext4) datmo must copy and hash the file, so the
reference is one single-threaded `b3sum` pass, plus `cp --reflink=auto` of the
file and `sync` of the copy. Where reflinks work (XFS made with reflink=1, loop
mounted here) datmo clones and hashes the clone, so the reference is one `b3sum`.

The source file is read once before timing, and stays in the page cache for
every figure; `sync` runs (untimed) before each figure so no figure pays for the
write-back of another. Each repetition uses a fresh store, project or repository.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from benchmarks.context import Context
from benchmarks.harness import (
    Row,
    Samples,
    Section,
    Step,
    fmt_seconds,
    interleaved,
    log,
    run,
    timed,
)
from benchmarks.tools import B3SUM, fs_type, git, read_once, remove, sync, xfs_mount
from benchmarks.trees import write_random


def bench_ext4(ctx: Context) -> Section:
    base = ctx.workdir / "newfile-ext4"
    remove(base)
    base.mkdir(parents=True)
    try:
        return _bench(ctx, base, f"{fs_type(base)}, the store's copy path", 1.2)
    finally:
        if not ctx.keep:
            remove(base)


def bench_xfs(ctx: Context) -> Section:
    image, mnt = ctx.workdir / "xfs.img", ctx.workdir / "xfs-mnt"
    size = 4 * ctx.sizes.new_file + (1 << 30)  # sparse: source, git's copy, spare room
    with xfs_mount(image, mnt, size) as base:
        return _bench(ctx, base, "XFS with reflink=1 (loop mount), the store's clone path", 1.5)


def _bench(ctx: Context, base: Path, where: str, target: float) -> Section:
    from datmo.core.storage.objects import ObjectStore

    tools, env, size = ctx.tools, ctx.tools.env, ctx.sizes.new_file
    human = f"{size / (1 << 30):g} GiB" if size >= 1 << 30 else f"{size >> 20} MiB"
    section = Section(f"A new {human} file into a snapshot, on {where}")
    src = base / "new.bin"
    log(f"new file on {where}: writing {human}")
    write_random(src, size, seed=7)
    sync()
    read_once(src)  # in the page cache from here on, for every figure
    expected = run([*B3SUM, src]).stdout.decode().split()[0]
    clones = ObjectStore(base / "probe").reflinks_supported()
    remove(base / "probe")

    # A project that already has a snapshot of its code; each repetition copies it by
    # hard links (same inodes: its stat cache stays valid) and adds the new file.
    template = base / "template"
    template.mkdir()
    (template / "train.py").write_text("import os\n\nprint(os.getcwd())\n")
    (template / "README.md").write_text("# project\n")
    time.sleep(2.5)  # let the mtimes age past datmo's racy-timestamp windows

    def fresh_project() -> Path:
        proj = base / "project"
        remove(proj)
        proj.mkdir()
        for name in ("train.py", "README.md"):
            os.link(template / name, proj / name)
        run(tools.datmo_cmd("init"), cwd=proj, env=env)
        run(tools.datmo_cmd("snapshot", "create", "-m", "code"), cwd=proj, env=env)
        os.link(src, proj / "model.bin")
        return proj

    def b3sum() -> dict[str, float]:
        sync()
        return {"b3sum": timed([*B3SUM, src])}

    def click() -> dict[str, float]:
        sync()
        return {"click": timed(tools.python_cmd("import click"), env=env)}

    def cp_sync() -> dict[str, float]:
        dst = base / "copy.bin"
        remove(dst)
        sync()
        cp = timed(["cp", "--reflink=auto", src, dst])
        return {"cp": cp, "sync": timed(["sync", dst])}

    def b3sum_clone() -> dict[str, float]:
        # Not a reference: what reading a fresh clone costs, since the store hashes its
        # clone (page cache is per file, and a clone shares blocks, not cached pages).
        clone = base / "clone.bin"
        remove(clone)
        run(["cp", "--reflink=always", src, clone])
        sync()
        return {"b3sum fresh clone": timed([*B3SUM, clone])}

    def put_file() -> dict[str, float]:
        root = base / "store"
        remove(root)
        sync()
        store = ObjectStore(root)
        started = time.perf_counter()
        digest, _ = store.put_file(src)
        elapsed = time.perf_counter() - started
        if digest != expected:
            raise AssertionError(f"put_file digest {digest} != b3sum {expected}")
        return {"put_file": elapsed}

    def cli() -> dict[str, float]:
        proj = fresh_project()
        sync()
        return {
            "datmo create": timed(
                tools.datmo_cmd("snapshot", "create", "-m", "new"), cwd=proj, env=env
            )
        }

    def git_add() -> dict[str, float]:
        repo = base / "git-repo"
        remove(repo)
        run(git("init", "-q", str(repo)), env=env)
        os.link(src, repo / "model.bin")
        sync()
        return {"git add": timed(git("add", "model.bin"), cwd=repo, env=env)}

    steps: dict[str, Step] = {"b3sum": b3sum}
    steps |= {"b3sum fresh clone": b3sum_clone} if clones else {"cp + sync": cp_sync}
    steps |= {"put_file": put_file, "click": click, "datmo create": cli}
    log(f"new file on {where}: timing ({ctx.sizes.reps_big} repetitions)")
    s = interleaved(steps, ctx.sizes.reps_big)
    # git add takes tens of seconds a time and its target has a wide margin: fewer
    # repetitions, interleaved with datmo's command they are compared with.
    log(f"new file on {where}: timing git add ({ctx.sizes.reps_git} repetitions)")
    s_git = interleaved({"datmo create": cli, "git add": git_add}, ctx.sizes.reps_git, warmup=0)

    section.rows += _rows(s, s_git, human, where.split(",")[0], clones, target)
    section.details.append(
        "the store clones the file here (reflinks work)"
        if clones
        else "the store copies the file here (reflinks do not work)"
    )
    for name in s.values:
        section.details.append(f"{name}: {s.spread(name)}")
    for name in s_git.values:
        section.details.append(f"{name} (git add block): {s_git.spread(name)}")
    for name in ("put_file", "datmo create", "b3sum"):
        rate = size / s.median(name) / 1e6
        section.details.append(f"{name}: {rate:,.0f} MB/s")
    for p in ("project", "store", "git-repo", "copy.bin", "clone.bin", "template", "new.bin"):
        remove(base / p)
    return section


def _rows(
    s: Samples, s_git: Samples, human: str, fs: str, clones: bool, target: float
) -> list[Row]:
    b3, click = s.median("b3sum"), s.median("click")
    parts = f"b3sum {fmt_seconds(b3)}"
    ref, text = b3, parts
    label = "b3sum"
    if not clones:
        cp, sy = s.median("cp"), s.median("sync")
        ref = b3 + cp + sy
        parts = f"b3sum {fmt_seconds(b3)} + cp {fmt_seconds(cp)} + sync {fmt_seconds(sy)}"
        text = f"{fmt_seconds(ref)} = {parts}"
        label = "(b3sum + cp + sync)"
    what = f"new {human} file, {fs}"
    git_s, create = s_git.median("git add"), s.median("datmo create")
    create_git = s_git.median("datmo create")
    rows = [
        Row(
            f"{what}: ObjectStore.put_file vs {label}",
            "max",
            target,
            s.median("put_file"),
            ref,
            text,
        ),
        Row(
            f"{what}: `datmo snapshot create` vs {label} + import click",
            "max",
            target,
            create,
            ref + click,
            f"{fmt_seconds(ref + click)} = {parts} + import click {fmt_seconds(click)}",
        ),
        Row(
            f"{what}: `datmo snapshot create` vs git add",
            "speedup",
            10.0,
            create_git,
            git_s,
            f"git add {fmt_seconds(git_s)}",
        ),
    ]
    if clones:
        fresh = s.median("b3sum fresh clone")
        rows.insert(
            1,
            Row(
                f"{what}: ObjectStore.put_file vs b3sum of a fresh clone (uncached)",
                "info",
                target,
                s.median("put_file"),
                fresh,
                f"b3sum of a fresh clone {fmt_seconds(fresh)}",
            ),
        )
    return rows
