"""The entry point of a datmo job on a Slurm compute node:
`python -m datmo.cli.slurmjob ROOT BATCH TOKEN OFFSET` (the batch script datmo submits;
see datmo.core.controller.slurm). Its stdout and stderr go to the job's output file."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from datmo.core.controller import slurmnode

    if len(argv) != 4 or not argv[3].isdigit():
        print("datmo: error: usage: python -m datmo.cli.slurmjob ROOT BATCH TOKEN OFFSET")
        return 2
    root, batch, token, offset = argv
    try:
        ctx, run_id = slurmnode.open_as_submitted(root, batch, token, int(offset))
        return slurmnode.run_job(ctx, run_id)
    except slurmnode.NotSeen as e:
        print(f"datmo: error: {e}", file=sys.stderr, flush=True)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
