"""`datmo fsck` and `datmo gc`."""

from __future__ import annotations

import sys

import click

from datmo.cli.output import echo, note


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


@click.command()
@click.option(
    "--repair", is_flag=True, help="Fix what can be derived; unreadable records go to quarantine."
)
@click.option(
    "--remote", "remote", metavar="NAME", help="Check this remote instead (reads it all)."
)
def fsck(repair: bool, remote: str | None) -> None:
    """Check the whole store: records, references, stored objects, git, the index.

    With --remote, check a remote: its objects against their hashes, its records against
    its objects, code and each other. Exits non-zero when a problem remains.
    Example: datmo fsck --repair, or datmo fsck --remote origin
    """
    from datmo.core.controller import fsck as ctl
    from datmo.core.controller.project import open_project

    if remote is not None:
        if repair:
            raise click.UsageError("--repair is for this project; a remote is only checked")
        from datmo.core.controller import remotecheck

        found = remotecheck.check(open_project(), remote)
        for line in found.problems:
            echo(f"problem: {line}")
        counts = ", ".join(f"{n} {k}" for k, n in found.counts.items())
        if found.problems:
            echo(f"{len(found.problems)} problem(s) on remote '{found.remote}' ({counts})")
            sys.exit(1)
        echo(f"ok: remote '{found.remote}': {counts}")
        return

    report = ctl.check(open_project(recover=False), repair)
    for line in report.repaired:
        note(f"repaired: {line}")
    for line in report.problems:
        echo(f"problem: {line}")
    counts = ", ".join(f"{n} {k}" for k, n in report.counts.items())
    if report.problems:
        hint = "" if repair else "; 'datmo fsck --repair' fixes what can be derived"
        echo(f"{len(report.problems)} problem(s) in {counts}{hint}")
        sys.exit(1)
    echo(f"ok: {counts}")


def parse_duration(text: str) -> float:
    """'0', '90s', '30m', '1h', '2d' (a bare number is seconds) -> seconds."""
    from datmo.errors import UsageError

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip().lower()
    number, unit = (t[:-1], t[-1]) if t and t[-1] in units else (t, "s")
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise UsageError(f"--grace '{text}' is not a duration; use 0, 90s, 30m, 1h or 2d") from None
    if value < 0 or value != value:
        raise UsageError(f"--grace '{text}' must not be negative")
    return value


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:g}s"


@click.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be freed.")
@click.option(
    "--grace",
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="Spare what is younger than this (0 frees at once; only when no other datmo runs).",
)
def gc(dry_run: bool, grace: str) -> None:
    """Free stored data that no snapshot, run or environment refers to any more.

    A deleted run's hidden snapshots go too. Anything younger than the grace period is
    kept, so a snapshot or run being made right now never loses its data.
    Example: datmo snapshot delete 3f2a && datmo gc --grace 0
    """
    from datmo.core.controller import gc as ctl
    from datmo.core.controller.project import open_project

    r = ctl.collect(open_project(), dry_run, parse_duration(grace))
    if r.warning:
        note(f"warning: {r.warning}")
    verb = "would free" if dry_run else "freed"
    records = f"{r.snapshots} snapshot(s), {r.environments} environment(s), "
    echo(
        f"{verb} {_bytes(r.freed)}: {records}{r.objects} stored file(s) "
        f"({_bytes(r.object_bytes)}), git {_bytes(r.git_bytes)}, {r.run_data} run log "
        f"folder(s) ({_bytes(r.run_data_bytes)}), scratch {_bytes(r.scratch_bytes)}, "
        f"{len(r.images)} image(s), {len(r.containers)} container(s)"
    )
    if r.young:
        note(
            f"kept {r.young} record(s) and stored file(s) ({_bytes(r.young_bytes)}) younger "
            f"than the grace period of {_duration(r.grace_s)}; 'datmo gc --grace 0' frees "
            "them now (when no other datmo command is running)"
        )
