"""Timing and results: interleaved repetitions, medians, and one row per target.

Every target is a ratio between datmo and a reference measured in the same run,
so the suite says the same thing on a fast laptop and on a busy CI machine.
References and datmo are run interleaved (in a rotating order within each
repetition), so a burst of load from elsewhere hits both sides alike.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A figure: the seconds (or bytes) of one repetition, by the name of what was measured.
# A step may measure several things (cp, then sync of the copy), hence a mapping.
Step = Callable[[], Mapping[str, float]]

PASS, FAIL, SKIPPED, INFO = "PASS", "FAIL", "SKIPPED", "INFO"


@dataclass
class Row:
    """One line of the results table.

    kind "max": datmo / reference must be at most `target`;
    kind "speedup": reference / datmo must be at least `target` (datmo N times faster);
    kind "info": reported as "max" would be, for reading beside a target, never failing.
    """

    benchmark: str
    kind: str
    target: float
    datmo: float | None = None
    reference: float | None = None
    reference_text: str = ""  # how the reference figure is made up
    unit: str = "s"  # "s" or "B"
    skipped: str = ""  # the reason, when the row could not be measured

    @property
    def ratio(self) -> float | None:
        if self.datmo is None or self.reference is None or self.skipped:
            return None
        if self.kind == "speedup":
            return self.reference / self.datmo if self.datmo > 0 else float("inf")
        return self.datmo / self.reference if self.reference > 0 else float("inf")

    @property
    def status(self) -> str:
        if self.skipped:
            return SKIPPED
        ratio = self.ratio
        if ratio is None:
            return FAIL
        if self.kind == "info":
            return INFO
        ok = ratio >= self.target if self.kind == "speedup" else ratio <= self.target
        return PASS if ok else FAIL

    def ratio_text(self) -> str:
        ratio = self.ratio
        if ratio is None:
            return "-"
        return f"{ratio:.1f}x faster" if self.kind == "speedup" else f"{ratio:.2f}x"

    def target_text(self) -> str:
        if self.kind == "speedup":
            return f">= {self.target:g}x faster"
        if self.kind == "info":
            return f"(info; <= {self.target:g}x above)"
        return f"<= {self.target:g}x"


@dataclass
class Section:
    """What one benchmark reports: its rows plus details for the doc."""

    title: str
    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)  # markdown bullet lines


@dataclass
class Samples:
    """Raw figures by name; `median` is what the tables show."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, figures: Mapping[str, float]) -> None:
        for name, value in figures.items():
            self.values.setdefault(name, []).append(value)

    def median(self, name: str) -> float:
        return statistics.median(self.values[name])

    def spread(self, name: str) -> str:
        v = self.values[name]
        low, high = fmt_seconds(min(v)), fmt_seconds(max(v))
        return f"median {fmt_seconds(self.median(name))} (min {low}, max {high}, n={len(v)})"


def interleaved(steps: Mapping[str, Step], reps: int, warmup: int = 1) -> Samples:
    """Run every step `reps` times, all steps once per repetition, rotating which goes first."""
    names = list(steps)
    for _ in range(warmup):
        for name in names:
            steps[name]()
    samples = Samples()
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            samples.add(steps[name]())
    return samples


class CommandFailed(RuntimeError):
    pass


class Skip(Exception):
    """A benchmark that cannot run here (a tool missing, no root for a loop mount)."""


def run(
    argv: Sequence[str | os.PathLike[str]],
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a command (not timed); a failure raises with its stderr."""
    proc = subprocess.run(
        [os.fspath(a) for a in argv],
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).decode(errors="replace").strip()
        cmd = " ".join(os.fspath(a) for a in argv)
        raise CommandFailed(f"`{cmd}` exited {proc.returncode}: {err[-2000:]}")
    return proc


def timed(
    argv: Sequence[str | os.PathLike[str]],
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> float:
    """Wall-clock seconds of one run of a command, output captured, failure raised."""
    args = [os.fspath(a) for a in argv]
    env_d = dict(env) if env is not None else None
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=env_d, stdin=subprocess.DEVNULL, capture_output=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).decode(errors="replace").strip()
        raise CommandFailed(f"`{' '.join(args)}` exited {proc.returncode}: {err[-2000:]}")
    return elapsed


def fmt_seconds(s: float) -> str:
    if s >= 10:
        return f"{s:.1f} s"
    if s >= 1:
        return f"{s:.2f} s"
    return f"{s * 1000:.0f} ms" if s >= 0.1 else f"{s * 1000:.1f} ms"


def fmt_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return fmt_bytes(value) if unit == "B" else fmt_seconds(value)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
