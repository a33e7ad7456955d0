"""What every benchmark is handed: sizes, repetitions, scratch folder and tools."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.tools import Tools
from benchmarks.trees import TreeSpec


@dataclass(frozen=True)
class Sizes:
    big_tree: TreeSpec  # "2 GB in about 2,000 files"
    many_files: TreeSpec  # "100,000 small files"
    new_file: int  # bytes of the new file stored by a snapshot
    reps: int  # repetitions of the re-snapshot figures (tens of ms at 2 GB: noisy)
    reps_big: int  # repetitions of the commands that move a whole large file
    reps_git: int  # repetitions of `git add` of that file (tens of seconds each)
    reps_startup: int  # repetitions of start-up figures (tens of ms: noisier)
    snapshots: int  # snapshots listed by `snapshot ls`
    sweep_runs: int = 20  # one-second runs of the makespan benchmark
    staged_runs: int = 1000  # runs staged for `queue ls` and `ls`
    scale_files: int = 100_000  # ~60-byte .py files of the scale rows (issue 17)
    dataset_files: int = 20_000  # 50 kB random files of the data-set rows (1 GB)
    reps_scale: int = 3  # first snapshots and checkouts of whole trees (a minute or two each)
    reps_scale_change: int = 5  # one file changed among scale_files (seconds each)


FULL = Sizes(
    big_tree=TreeSpec(small_files=1_990, small_bytes=4_000, big_files=10, big_bytes=200_000_000),
    many_files=TreeSpec(small_files=100_000, small_bytes=2_000, big_files=0, big_bytes=0),
    new_file=1 << 30,
    reps=15,
    reps_big=7,
    reps_git=3,
    reps_startup=21,
    snapshots=100,
)
QUICK = Sizes(
    big_tree=TreeSpec(small_files=190, small_bytes=4_000, big_files=2, big_bytes=8_000_000),
    many_files=TreeSpec(small_files=2_000, small_bytes=2_000, big_files=0, big_bytes=0),
    new_file=32 << 20,
    reps=3,
    reps_big=3,
    reps_git=2,
    reps_startup=5,
    snapshots=20,
    sweep_runs=6,
    staged_runs=100,
    scale_files=2_000,
    dataset_files=500,
    reps_scale=2,
    reps_scale_change=3,
)


@dataclass(frozen=True)
class Context:
    sizes: Sizes
    workdir: Path  # scratch; each benchmark removes its own folder when done
    tools: Tools
    keep: bool  # leave scratch folders behind (for debugging)
