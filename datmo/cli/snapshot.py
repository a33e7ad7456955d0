"""`datmo snapshot ...`: thin commands over the snapshot controllers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from datmo.cli.output import echo, format_option, note, render
from datmo.cli.quick import create_lines

config_option = click.option(
    "-c",
    "--config",
    "config",
    multiple=True,
    metavar="KEY=VALUE",
    help="Config value, typed (lr=0.01 is a number). Repeatable.",
)
stats_option = click.option(
    "-s",
    "--stats",
    "stats",
    multiple=True,
    metavar="KEY=VALUE",
    help="Metric value, typed (acc=0.91). Repeatable.",
)


def snapshot_row(s: Any, current_id: str | None) -> dict[str, Any]:
    return {
        "id": s.id,
        "current": s.id == current_id,
        "created_at": s.created_at,
        "message": s.message,
        "label": s.label,
        "tags": s.tags,
        "config": s.config,
        "metrics": s.metrics,
        "code_id": s.code_id,
        "environment_id": s.environment_id,
        "files_id": s.files_id,
        "requirements_id": s.requirements_id,
        "hidden": s.hidden,
        "run_id": s.run_id,
        "file_count": s.file_count,
        "code_count": s.code_count,
        "total_bytes": s.total_bytes,
        "from": s.origin,
    }


def _table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        t = dict(r)
        t["id"] = ("* " if r["current"] else "  ") + r["id"][:8]
        t["created_at"] = r["created_at"][:19].replace("T", " ")
        for k in ("code_id", "environment_id", "files_id"):
            t[k] = (r[k] or "")[:8]
        out.append(t)
    return out


@click.group()
def snapshot() -> None:
    """Create, list, compare and restore snapshots.

    Example: datmo snapshot create -m "baseline" -c lr=0.01 -s acc=0.91
    """


@snapshot.command()
@click.option("-m", "--message", required=True, help="What this snapshot is.")
@click.option("-l", "--label", help="A short label, such as 'best'.")
@config_option
@stats_option
@click.option("--config-file", type=click.Path(dir_okay=False), help="JSON or YAML config.")
@click.option("--stats-file", type=click.Path(dir_okay=False), help="JSON or YAML metrics.")
@click.option("--run-id", help="Make this run's after snapshot a visible snapshot instead.")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Tag the snapshot. Repeatable.")
@click.option(
    "--paths",
    multiple=True,
    metavar="SRC[>DEST]",
    help="Also store a file or folder from outside the project, under DEST. Repeatable.",
)
def create(
    message: str,
    label: str | None,
    config: tuple[str, ...],
    stats: tuple[str, ...],
    config_file: str | None,
    stats_file: str | None,
    paths: tuple[str, ...],
    run_id: str | None,
    tags: tuple[str, ...],
) -> None:
    """Record code, environment, files, config and metrics; print the snapshot id.

    Example: datmo snapshot create -m "more layers" -c layers=4 -s acc=0.93
    """
    from datmo.core.controller import snapshot as ctl
    from datmo.core.controller.project import open_project
    from datmo.core.controller.tags import checked
    from datmo.core.util.params import parse_pairs

    if run_id:
        snap = ctl.from_run(
            open_project(),
            run_id,
            message,
            label=label,
            config=parse_pairs(config, "--config"),
            metrics=parse_pairs(stats, "--stats"),
        )
        echo(snap.id)
        return
    result = ctl.create(
        open_project(),
        message,
        label=label,
        config=parse_pairs(config, "--config"),
        metrics=parse_pairs(stats, "--stats"),
        config_file=config_file,
        stats_file=stats_file,
        paths=paths,
        tags=checked(tags),
    )
    notes, out = create_lines(result.snapshot.id, result.created, result.skipped)
    for line in notes:
        note(line)
    echo(out)


@snapshot.command(name="ls")
@click.option("--all", "show_all", is_flag=True, help="Include hidden snapshots made by runs.")
@click.option("--details", is_flag=True, help="Show code, environment and files ids.")
@format_option
def ls_cmd(show_all: bool, details: bool, fmt: str) -> None:
    """List snapshots, newest first; * marks the current one.

    Example: datmo snapshot ls --format json
    """
    from datmo.core.controller import snapshot as ctl
    from datmo.core.controller.project import open_project

    ctx = open_project()
    cur = ctl.current_id(ctx)
    rows = [snapshot_row(s, cur) for s in ctl.ls(ctx, all=show_all)]
    cols = ["id", "created_at", "message", "label", "tags", "config", "metrics"]
    if details:
        cols += ["code_id", "environment_id", "files_id", "hidden"]
    if fmt == "csv":
        cols.insert(1, "current")
    if any(r["from"] for r in rows):  # pulled: the remote or bundle each came from
        cols.append("from")
    echo(render(_table_rows(rows) if fmt == "table" else rows, cols, fmt))


@snapshot.command()
@click.argument("snapshot_id")
@format_option
def inspect(snapshot_id: str, fmt: str) -> None:
    """Show everything a snapshot records.

    Example: datmo snapshot inspect 3f2a
    """
    from datmo.core.controller import snapshot as ctl
    from datmo.core.controller.project import open_project

    ctx = open_project()
    snap = ctl.get(ctx, snapshot_id)
    row = snapshot_row(snap, ctl.current_id(ctx))
    row.update(platform=snap.platform, skipped=snap.skipped, parent_id=snap.parent_id)
    row["code_commit"] = snap.code_commit
    if fmt != "table":
        echo(render([row], list(row), fmt))
        return
    for key, value in row.items():
        shown = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value
        echo(f"{key:>16}: {'' if shown is None else shown}")


@snapshot.command()
@click.argument("first")
@click.argument("second")
@click.option("-p", "--code", "show_code", is_flag=True, help="Also show the code's unified diff.")
@format_option
def diff(first: str, second: str, show_code: bool, fmt: str) -> None:
    """Compare two snapshots: config and metrics side by side, code and files changed.

    A run's id means its after snapshot (RUN:before its before), a label the snapshot
    that has it. Example: datmo snapshot diff 3f2a 9c1d -p
    """
    from datmo.core.controller import compare
    from datmo.core.controller.project import open_project

    ctx = open_project()
    d = compare.diff(ctx, first, second)
    patch = compare.code_diff(ctx, d.first.id, d.second.id) if show_code else ""
    if fmt == "json":
        doc = {**d.to_dict(), **({"patch": patch} if show_code else {})}
        echo(json.dumps(doc, indent=2, ensure_ascii=False, default=str))
        return
    rows = [
        {"section": section, "key": key, "change": f"{_v(a)} -> {_v(b)}"}
        for section, values in (("config", d.config), ("metrics", d.metrics))
        for key, (a, b) in values.items()
    ]
    for section, ch in (("code", d.code), ("files", d.files)):
        for mark, paths in (("added", ch.added), ("removed", ch.removed), ("changed", ch.changed)):
            rows += [{"section": section, "key": p, "change": mark} for p in paths]
    echo(f"{d.first.id[:8]} -> {d.second.id[:8]}")
    echo(render(rows, ["section", "key", "change"], fmt) if rows else "no differences")
    if patch:
        echo("")
        echo(patch.rstrip("\n"))


def _v(value: Any) -> str:
    return "(none)" if value is None else json.dumps(value) if not isinstance(value, str) else value


@snapshot.command()
@click.argument("snapshot_id")
@click.option("-m", "--message", help="New message.")
@click.option("-l", "--label", help="New label ('' removes it).")
@config_option
@stats_option
def update(
    snapshot_id: str,
    message: str | None,
    label: str | None,
    config: tuple[str, ...],
    stats: tuple[str, ...],
) -> None:
    """Change a snapshot's message or label, or merge in config and metrics.

    Example: datmo snapshot update 3f2a -l best -s test_acc=0.9
    """
    from datmo.core.controller import snapshot as ctl
    from datmo.core.controller.project import open_project
    from datmo.core.util.params import parse_pairs

    snap = ctl.update(
        open_project(),
        snapshot_id,
        message=message,
        label=label,
        config=parse_pairs(config, "--config"),
        metrics=parse_pairs(stats, "--stats"),
    )
    echo(snap.id)


@snapshot.command()
@click.argument("snapshot_id")
@click.option("--force", is_flag=True, help="Allow deleting the current snapshot.")
def delete(snapshot_id: str, force: bool) -> None:
    """Delete a snapshot record (its stored data goes at the next 'datmo gc').

    Example: datmo snapshot delete 3f2a
    """
    from datmo.core.controller import snapshot as ctl
    from datmo.core.controller.project import open_project
    from datmo.core.controller.references import named

    done = ctl.delete(open_project(), snapshot_id, force)
    short = done.snapshot.id[:8]
    if done.kept_for:
        echo(
            f"Deleted snapshot {short} from listings; its data stays while "
            f"{named(done.kept_for, 'run')} {'uses' if len(done.kept_for) == 1 else 'use'} it "
            "(delete those runs, then 'datmo gc')"
        )
    else:
        echo(f"Deleted snapshot {short}")


@snapshot.command()
@click.argument("snapshot_id")
@click.argument("paths", nargs=-1)
@click.option("--force", is_flag=True, help="Save unsaved changes as a hidden snapshot, then go.")
@click.option(
    "--to",
    "to",
    type=click.Path(file_okay=False),
    help="Write the snapshot (or PATHS of it) into this folder instead of the working tree.",
)
def checkout(snapshot_id: str, paths: tuple[str, ...], force: bool, to: str | None) -> None:
    """Restore a snapshot's code and files into the working tree.

    Refuses when you have unsaved changes, unless --force (which saves them
    first as a hidden snapshot). Paths no snapshot holds are never touched.

    Example: datmo snapshot checkout 3f2a, or datmo snapshot checkout 3f2a --to ../old model.pt
    """
    from datmo.core.controller.project import open_project
    from datmo.errors import UsageError

    ctx = open_project()
    if to is not None:
        from datmo.core.controller import export

        n = export.export(ctx, snapshot_id, Path(to), list(paths), Path.cwd())
        echo(f"Wrote {n} path(s) of snapshot {snapshot_id} into {to}")
        return
    if paths:
        raise UsageError("PATHS only work with --to DIR; a checkout restores the whole snapshot")
    from datmo.core.controller import checkout as ctl

    result = ctl.checkout(ctx, snapshot_id, force)
    if result.saved:
        note(
            f"Saved your unsaved work as hidden snapshot {result.saved.id[:8]}; "
            f"return to it with 'datmo snapshot checkout {result.saved.id[:8]}'"
        )
    echo(
        f"Checked out snapshot {result.snapshot.id[:8]} "
        f"({result.written} written, {result.removed} removed)"
    )
