"""The `datmo` console script: start a run's supervisor early, then the CLI."""

from __future__ import annotations

import sys


def main() -> None:
    from datmo.core.prespawn import start_early

    start_early(sys.argv[1:])
    from datmo.cli.main import main as cli_main

    # The interpreter's own teardown stays (~10 ms): ending with os._exit made storing
    # a new 1 GiB file in the next datmo process 2-4x slower on ext4 with online discard
    # (benchmarks/newfile.py, docs/performance.md), for a reason not yet understood.
    cli_main()
