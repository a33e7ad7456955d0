"""The `datmo` console script: start a run's supervisor early, then the CLI."""

from __future__ import annotations

import sys


def main() -> None:
    from datmo.core.prespawn import start_early

    start_early(sys.argv[1:])
    from datmo.cli.main import main as cli_main

    cli_main()
