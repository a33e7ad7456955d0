"""`make bench`: run datmo's performance benchmarks and write docs/performance.md.

    python benchmarks/run.py                 # everything, full sizes (about 45 minutes)
    python benchmarks/run.py --quick         # small sizes, to check the suite itself
    python benchmarks/run.py --only startup  # one benchmark (--list names them)

Exits 1 when a target is missed, 0 otherwise (a SKIPPED row says why it could not run).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"


def main(argv: list[str] | None = None) -> int:
    # Run as a script (`python benchmarks/run.py`): make `benchmarks` and this
    # checkout's `datmo` importable, as `python -m benchmarks.run` would.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks import manyruns, newfile, remote, resnapshot, runs, scale, slurm, startup, ui
    from benchmarks.context import FULL, QUICK, Context
    from benchmarks.harness import FAIL, Row, Section, Skip, log
    from benchmarks.report import machine, text_table, write_doc
    from benchmarks.tools import find_tools, remove

    benches: dict[str, Callable[[Context], Section]] = {
        "startup": startup.bench,
        resnapshot.BIG.name: lambda c: resnapshot.bench(c, resnapshot.BIG),
        resnapshot.MANY.name: lambda c: resnapshot.bench(c, resnapshot.MANY),
        "newfile-ext4": newfile.bench_ext4,
        "newfile-xfs": newfile.bench_xfs,
        "run-container": runs.bench_container,
        "run-nobuild": runs.bench_nobuild,
        "run-overhead": runs.bench_overhead,
        "ls-100k": runs.bench_ls,
        "filter-vs-mlflow": runs.bench_filter,
        "queue-makespan": manyruns.bench_makespan,
        "queue-workcopy": manyruns.bench_workcopy,
        "queue-staging": manyruns.bench_staging,
        "slurm": slurm.bench,
        "ui-runs": ui.bench_runs_table,
        "ui-series": ui.bench_series,
        "ui-vs-mlflow": ui.bench_mlflow_ui,
        "remote-folder": remote.bench_folder,
        "remote-ssh": remote.bench_ssh,
        "scale-first": scale.bench_first,
        "scale-change": scale.bench_change,
        "scale-dataset": scale.bench_dataset,
        "scale-checkout": scale.bench_checkout,
    }
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes and few repetitions")
    p.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run this benchmark (repeatable; a prefix works)",
    )
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument(
        "--workdir", type=Path, default=ROOT / ".bench", help="scratch folder (default .bench)"
    )
    p.add_argument(
        "--output",
        type=Path,
        help=f"markdown results (default {DOC.relative_to(ROOT)} for a full run of everything, "
        "else WORKDIR/performance.md)",
    )
    p.add_argument("--keep", action="store_true", help="keep the scratch projects")
    args = p.parse_args(argv)
    if args.list:
        print("\n".join(benches))
        return 0
    selected = list(benches)
    if args.only:
        selected = [n for n in benches if any(n.startswith(o) for o in args.only)]
        if not selected:
            p.error(f"no benchmark matches {args.only}; choose from {', '.join(benches)}")
    sizes = QUICK if args.quick else FULL
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = Context(sizes, workdir, find_tools(workdir), args.keep)
    log(f"datmo: {ctx.tools.how}; scratch: {workdir}")

    sections: list[Section] = []
    for name in selected:
        log(f"== {name}")
        try:
            sections.append(benches[name](ctx))
        except Skip as e:
            log(f"{name}: skipped: {e}")
            sections.append(Section(name, [Row(name, "max", 0, skipped=f"skipped: {e}")]))
        except Exception as e:
            traceback.print_exc()
            row = Row(name, "max", 0, reference_text=f"error: {type(e).__name__}: {e}"[:300])
            sections.append(Section(name, [row], [f"error: {e}"]))
            if not args.keep:
                remove(workdir / name)

    rows = [r for s in sections for r in s.rows]
    print(text_table(rows))
    full_run = not args.quick and selected == list(benches)
    out = args.output or (DOC if full_run else workdir / "performance.md")
    mode = "quick sizes" if args.quick else "full sizes"
    if selected != list(benches):
        mode += ", only " + ", ".join(selected)
    write_doc(out, sections, machine(workdir, ctx.tools), mode)
    log(f"wrote {out}")
    return 1 if any(r.status == FAIL for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
