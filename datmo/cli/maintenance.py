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
def fsck(repair: bool) -> None:
    """Check the whole store: records, references, stored objects, git, the index.

    Exits non-zero when a problem remains. Example: datmo fsck --repair
    """
    from datmo.core.controller import fsck as ctl
    from datmo.core.controller.project import open_project

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


@click.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be freed.")
def gc(dry_run: bool) -> None:
    """Free stored data that no snapshot, run or environment refers to any more.

    Example: datmo snapshot delete 3f2a && datmo gc
    """
    from datmo.core.controller import gc as ctl
    from datmo.core.controller.project import open_project

    r = ctl.collect(open_project(), dry_run)
    if r.warning:
        note(f"warning: {r.warning}")
    verb = "would free" if dry_run else "freed"
    echo(
        f"{verb} {_bytes(r.freed)}: {r.objects} stored file(s) ({_bytes(r.object_bytes)}), "
        f"git {_bytes(r.git_bytes)}, {r.run_data} run log folder(s) ({_bytes(r.run_data_bytes)}), "
        f"scratch {_bytes(r.scratch_bytes)}, {len(r.images)} image(s), "
        f"{len(r.containers)} container(s)"
    )
