"""Start-up: `datmo --help` and `datmo snapshot ls` against bare imports of their libraries.

The references run the same interpreter, so the ratios measure what datmo adds
on top of importing click (and tabulate, which the table format needs).
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.context import Context
from benchmarks.harness import Row, Section, Step, fmt_seconds, interleaved, log, run, timed
from benchmarks.tools import remove


def bench(ctx: Context) -> Section:
    tools, env, n = ctx.tools, ctx.tools.env, ctx.sizes.snapshots
    base = ctx.workdir / "startup"
    remove(base)
    proj = base / "project"
    proj.mkdir(parents=True)
    (proj / "train.py").write_text("import os\n\nprint(os.getcwd())\n")
    (proj / "README.md").write_text("# project\n")
    run(tools.datmo_cmd("init"), cwd=proj, env=env)
    log(f"startup: creating {n} snapshots in-process")
    _make_snapshots(proj, n)
    listed = run(tools.datmo_cmd("snapshot", "ls"), cwd=proj, env=env).stdout.decode()
    if len(listed.splitlines()) != n + 2:  # header and rule
        raise AssertionError(f"`snapshot ls` printed {len(listed.splitlines())} lines for {n}")

    def cmd(name: str, argv: list[str]) -> Step:
        return lambda: {name: timed(argv, cwd=proj, env=env)}

    steps = {
        "import click": cmd("import click", tools.python_cmd("import click")),
        "import click, tabulate": cmd(
            "import click, tabulate", tools.python_cmd("import click, tabulate")
        ),
        "datmo --help": cmd("datmo --help", tools.datmo_cmd("--help")),
        "snapshot ls": cmd("snapshot ls", tools.datmo_cmd("snapshot", "ls")),
        "snapshot ls json": cmd(
            "snapshot ls json", tools.datmo_cmd("snapshot", "ls", "--format", "json")
        ),
    }
    log(f"startup: timing ({ctx.sizes.reps_startup} repetitions)")
    s = interleaved(steps, ctx.sizes.reps_startup, warmup=2)
    click, click_tab = s.median("import click"), s.median("import click, tabulate")
    section = Section(f"Start-up, and listing {n} snapshots")
    section.rows = [
        Row(
            "`datmo --help` vs import click",
            "max",
            1.5,
            s.median("datmo --help"),
            click,
            f"import click {fmt_seconds(click)}",
        ),
        Row(
            f"`datmo snapshot ls` ({n} snapshots) vs import click, tabulate",
            "max",
            1.5,
            s.median("snapshot ls"),
            click_tab,
            f"import click, tabulate {fmt_seconds(click_tab)}",
        ),
        Row(
            f"`datmo snapshot ls --format json` ({n} snapshots) vs import click",
            "max",
            1.5,
            s.median("snapshot ls json"),
            click,
            f"import click {fmt_seconds(click)}",
        ),
    ]
    section.details = [f"{name}: {s.spread(name)}" for name in s.values]
    if not ctx.keep:
        remove(base)
    return section


def _make_snapshots(proj: Path, n: int) -> None:
    """Through the controller, in this process: n CLI calls would take far longer."""
    from datmo.core.controller import snapshot as ctl
    from datmo.core.controller.project import open_project

    project = open_project(proj)
    for i in range(n):
        ctl.create(
            project,
            f"experiment {i}: more layers",
            config={"lr": 0.01 * (i + 1), "layers": i % 8},
            metrics={"acc": round(0.5 + i / (4 * n), 4), "loss": round(1 / (i + 1), 4)},
        )
