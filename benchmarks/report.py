"""The results: a table on the terminal, and docs/performance.md with the machine they came from."""

from __future__ import annotations

import os
import platform
import re
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.harness import Row, Section, fmt_value
from benchmarks.tools import Tools, fs_type, version_of

HEADERS = ("benchmark", "datmo", "reference", "ratio", "target", "result")


def cells(row: Row) -> list[str]:
    if row.skipped:
        return [row.benchmark, "-", row.skipped, "-", row.target_text(), row.status]
    return [
        row.benchmark,
        fmt_value(row.datmo, row.unit),
        row.reference_text or fmt_value(row.reference, row.unit),
        row.ratio_text(),
        row.target_text(),
        row.status,
    ]


def text_table(rows: Sequence[Row]) -> str:
    table = [list(HEADERS), *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: Sequence[Row]) -> str:
    def esc(c: str) -> str:
        return c.replace("|", "\\|")

    out = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    out += ["| " + " | ".join(esc(c) for c in cells(r)) + " |" for r in rows]
    return "\n".join(out)


def machine(workdir: Path, tools: Tools) -> list[tuple[str, str]]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        m = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        mem = f"{int(m.group(1)) / (1 << 20):.1f} GiB" if m else mem
    except OSError:
        pass
    return [
        ("CPU", cpu),
        ("cores", str(os.cpu_count())),
        ("memory", mem),
        ("filesystem (scratch folder)", f"{fs_type(workdir)} ({workdir})"),
        ("python", f"{platform.python_version()} ({tools.python})"),
        ("git", version_of(["git", "--version"])),
        ("b3sum", version_of(["b3sum", "--version"])),
        ("kernel", f"{platform.system()} {platform.release()}"),
        ("load average at the end (1, 5, 15 min)", ", ".join(f"{x:.1f}" for x in os.getloadavg())),
        ("datmo run as", tools.how),
        ("date", time.strftime("%Y-%m-%d %H:%M %Z")),
    ]


DOC_INTRO = """\
# Performance

`make bench` (`python benchmarks/run.py`) measures the figures below. Every target
is a **ratio** to a reference measured in the same run on the same machine, never
an absolute time, so the targets mean the same on a laptop and on a busy CI box.
`--quick` runs small sizes (for checking the suite itself), `--only NAME` one
benchmark (`--list` names them).

How the figures are taken:

- Each figure is the **median** of several repetitions (the count is in the details
  below), after one untimed warm-up. References and datmo run **interleaved**, in a
  rotating order within each repetition, so load from elsewhere hits both alike.
- Commands run as subprocesses, as a user runs them: datmo through its console
  script, installed from a wheel of the checkout into the suite's own virtualenv
  (not the development install, whose import hook slows every start-up in its venv),
  the `python -c "import ..."` references with the same interpreter, all from
  compiled bytecode (kept under the scratch folder with `PYTHONPYCACHEPREFIX`,
  written by the warm-up run). Git runs with
  `GIT_CONFIG_GLOBAL=/dev/null` and `GIT_CONFIG_NOSYSTEM=1`.
- **Re-snapshot**: the project is written, left to age 2.5 s (datmo, like git,
  distrusts timestamps from the last moments), snapshotted once untimed, then
  re-snapshotted with the same message (datmo finds nothing changed and returns
  the current id without writing a record; the suite checks that) and, in a second
  interleaved block, with a new message each time (a new record each time). The
  `git status` reference runs in a real repository of the same folder (everything
  committed, index warm, only `/.datmo/` excluded); `dvc status` runs in a
  byte-identical copy with every top-level entry `dvc add`ed, its state cache warm.
  Nothing is gitignored, so small files are code (datmo's shadow git) and the big
  ones go to its object store.
- **New file**: the file is read once before timing and stays in the **page cache
  for every figure** (datmo's and the references'); an untimed `sync` runs before
  each figure, so none pays for another's write-back. `ObjectStore.put_file` is
  timed in-process on a fresh store; `datmo snapshot create` runs in a fresh
  project that already has a snapshot of its code; `git add` in a fresh repository.
  On XFS datmo clones the file and hashes the clone, whose pages are not cached
  yet (the page cache is per file; a clone shares disk blocks, not cached pages):
  they come through the loop device from the image file. The INFO row beside it
  compares with `b3sum` of a fresh clone, which reads the same way. `git add` takes
  tens of seconds a time, so it runs fewer repetitions, interleaved with
  `datmo snapshot create` in a block of its own.
- **Growth**: `du -sb .datmo` (apparent sizes, folders included, nothing excluded)
  before and after each re-snapshot with a new message; the largest step is shown.
- **Snapshots at scale** (issue 17, `scale-*`): the trees are written once, left to
  age 2.5 s, and stay in the page cache; datmo's figures and the references' all end
  with a timed `sync`, so both pay for durability alike, and an untimed `sync` runs
  before each figure; each side's figure is the sum of its parts' medians. Instead of
  a warm-up repetition (minutes at these sizes), a tiny project is snapshotted and
  checked out first. *First snapshot*: 100,000 `.py` files
  of ~60 bytes (100 folders x 10 x 100, 6.0 MB); each repetition removes `.datmo` and
  runs `datmo init` (untimed), then times `datmo snapshot create` + `sync` against
  `git init`, `git add -A`, `git commit` and `sync` in a byte-identical copy (its
  `.git` removed each time). The same snapshot runs under `/usr/bin/time -v`: its
  maximum resident set size (the largest process: datmo, or a git it runs), the most
  of any repetition, must be at most 300 MB. *One file changed*: after an untimed
  snapshot and commit and one `git status`, each repetition rewrites a different file
  in both trees, waits 2.5 s, and times `datmo snapshot create` + `sync` against
  `git add -A` + `git commit` + `sync`; the first repetition is a warm-up. *Data set*:
  20,000 files of 50 kB of random bytes (1 GB) under `data/`; each repetition
  snapshots it in a fresh project, against single-threaded `b3sum` of every file +
  `cp -r` of the folder + `sync`. *Checkout*: `datmo snapshot checkout ID --to DIR`
  of that snapshot into an empty folder + `sync` against `cp -r` + `sync` of the same
  files; `diff -r` checks what was written.
"""


# What follows this line in the document is written by hand (figures make bench cannot
# take, such as the GPU check) and is kept when the document is written again.
KEPT = "<!-- Written by hand below this line; make bench keeps it. -->"


def write_doc(
    path: Path,
    sections: Sequence[Section],
    info: list[tuple[str, str]],
    mode: str,
) -> None:
    kept = ""
    if path.exists():
        old = path.read_text()
        if KEPT in old:
            kept = old[old.index(KEPT) :]
    rows = [r for s in sections for r in s.rows]
    parts = [DOC_INTRO, f"## Results ({mode})\n", markdown_table(rows), ""]
    parts += ["## Machine\n", "| | |", "|---|---|"]
    parts += [f"| {k} | {v} |" for k, v in info]
    parts.append("")
    parts.append("## Details\n")
    for s in sections:
        parts.append(f"### {s.title}\n")
        parts += [f"- {d}" for d in s.details]
        parts.append("")
    if kept:
        parts.append(kept.rstrip("\n") + "\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))
