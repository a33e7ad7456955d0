"""The entry point of a run's supervisor process: `python -m datmo.cli.supervise`.

`datmo run` starts it in its own session (datmo.core.task.prespawn), so it outlives
the terminal: `python -m datmo.cli.supervise ROOT EXECUTOR`, or `... --early
[EXECUTOR]` when the console script starts it before it knows the project. Its orders
(the project root, the run, the task's environment, secrets included) come as JSON on
stdin, never on disk; it answers one line on stdout and hands the rest to the run
controller (datmo.core.controller.outcome.supervise). A foreground run whose `datmo run`
dies is stopped and still recorded; a detached run goes on.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# Loaded at start-up, while the early supervisor waits for its orders, not after them.
from datmo.core.controller import outcome
from datmo.core.storage import runs as records
from datmo.core.storage.project import ProjectContext, find_project
from datmo.core.storage.store import Store


def _warm_up(executor: str) -> None:
    """Load what the run will need while `datmo run` (or a queue worker) prepares it:
    the executor, and the snapshot code its end needs (a worker's next run starts while
    this one's after snapshot is taken: it should cost CPU time then, not imports)."""
    from datmo.core.controller import snapshot  # noqa: F401
    from datmo.core.tree import capture  # noqa: F401

    if executor != "docker":
        from datmo.core.executor import local  # noqa: F401

        return
    try:
        from datmo.core.executor import docker  # noqa: F401
        from datmo.core.executor.engine import client

        client()
    except Exception:
        pass  # starting the task reports it properly


def _guess_executor(hint: str) -> str:
    """For an early start: what the run will most likely use."""
    if hint:
        return hint
    try:
        return find_project().info.default_executor
    except Exception:
        return ""  # not a project: `datmo run` will say so, and we get no orders


def main(argv: list[str]) -> int:
    if argv[:1] == ["--early"]:
        _warm_up(_guess_executor(argv[1] if len(argv) > 1 else ""))
    else:
        _warm_up(argv[1])
    payload = json.loads(sys.stdin.read() or "{}")
    if not payload:
        return 0  # `datmo run` stopped before the run was made: nothing to do
    root = Path(payload.get("root") or argv[0])
    run_id, fg = str(payload["run_id"]), int(payload.get("foreground") or 0)
    answer = os.dup(1)  # the one line for `datmo run`; stdin and stdout go to /dev/null
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    ctx = ProjectContext(root, Store(root))
    errlog = records.data_dir(ctx.store, run_id) / records.SUPERVISOR_LOG
    os.dup2(os.open(errlog, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), 2)
    try:
        return outcome.supervise(ctx, run_id, payload.get("env", {}), fg, answer)
    finally:
        from datmo.core.storage.index import close_shared

        close_shared()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
