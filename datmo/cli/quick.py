"""`datmo snapshot create -m MSG [-l LABEL]` without loading click.

Re-snapshotting an unchanged project is a few milliseconds of work (see
tree/stamp.py), while loading click and the command modules takes tens: for the
command scripts and training loops run after every step, the start-up was most of
the wait. So the console script hands this one shape of command line straight to
the snapshot controller, after asking tree/unchanged.py whether the answer is already
known (then nothing else is loaded). Only the options below, spelled as below, are
taken; anything else (another option, --help, --debug, a value that starts with
"-") goes to click, which stays the one source of usage and usage errors.
"""

from __future__ import annotations

import os
import sys

_OPTIONS = {"-m": "message", "--message": "message", "-l": "label", "--label": "label"}
# What is left out without a word: .git, caches, virtual environments, .datmoignore
# matches are expected. These may surprise (the record keeps every reason either way).
SURPRISING = ("may hold secrets", "not a regular file", "permission denied", "unreadable")


def parse_create(args: list[str]) -> dict[str, str] | None:
    """{'message': ..., 'label': ...} for `snapshot create` with -m/-l only, else None."""
    if args[:2] != ["snapshot", "create"]:
        return None
    found: dict[str, str] = {}
    rest = args[2:]
    while rest:
        arg, value = rest[0], None
        if arg in _OPTIONS and len(rest) > 1:
            value, rest = rest[1], rest[2:]
        elif arg.startswith(("--message=", "--label=")):
            arg, _, value = arg.partition("=")
            rest = rest[1:]
        if value is None or value.startswith("-"):
            return None  # not ours to judge
        found[_OPTIONS[arg]] = value  # a repeated option: the last wins, as in click
    return found if "message" in found else None


def create_lines(
    snapshot_id: str, created: bool, skipped: list[list[str]]
) -> tuple[list[str], str]:
    """What `snapshot create` says: notes for stderr, then the id for stdout. Shared with
    the click command, so every path prints the same."""
    from datmo.cli.console import one_line

    notes = []
    skipped = [s for s in skipped if s[1] in SURPRISING]
    if skipped:
        # Escaped: a file name is not to send control sequences to the terminal.
        shown = ", ".join(f"{one_line(p)} ({why})" for p, why in skipped[:8])
        more = f" and {len(skipped) - 8} more" if len(skipped) > 8 else ""
        notes.append(f"skipped: {shown}{more}")
    if not created:
        notes.append("nothing changed since the current snapshot; it is kept as is")
    return notes, snapshot_id


def run(args: list[str]) -> int | None:
    """The exit code if this command line was handled here; None to go to click."""
    options = parse_create(args)
    if options is None or os.environ.get("DATMO_DEBUG"):
        return None
    from datmo.cli.console import report, write

    try:
        from datmo.core.tree import unchanged

        message, label = options["message"], options.get("label")
        known = unchanged.answer(os.getcwd(), message, label)
        if known is not None:
            notes, out = create_lines(known[0], False, known[1])
        else:
            from datmo.core.controller import snapshot as ctl
            from datmo.core.controller.project import open_project

            result = ctl.create(open_project(), message, label=label)
            notes, out = create_lines(result.snapshot.id, result.created, result.skipped)
        for line in notes:
            write(sys.stderr, line)
        write(sys.stdout, out)
    except (Exception, KeyboardInterrupt) as e:
        return report(e, debug=False)
    return 0
