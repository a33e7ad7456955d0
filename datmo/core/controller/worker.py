"""A queue worker: starts staged runs, K at a time, handing out GPUs.

A worker only dispatches. Each run it starts gets its own supervisor, as a detached run
does, so killing a worker never kills a running task. Everything it decides is in the
run records, under the project lock: a run is claimed by turning it from QUEUED into
RUNNING (with this worker answering for it until its supervisor takes over), so two
workers never start one run twice; the GPUs a run holds are in its record with the host
they belong to, so a worker that starts on that host later knows which are taken. A run
whose worker died before its supervisor took over reads LOST, and is queued again when
it was staged with --retry (the attempt is counted).

Order: first in, first out, higher --priority first; a later run that fits the free
GPUs starts while an earlier one waits for more (backfill).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Callable

from datmo.core.controller import run as runs
from datmo.core.controller import snapshot as snapshots
from datmo.core.controller import sweep as sweeps
from datmo.core.controller import task, workcopy
from datmo.core.entity.base import new_id, utcnow
from datmo.core.entity.run import FAILED, LOST, QUEUED, RUNNING, SUCCESS, Run
from datmo.core.storage import runs as records
from datmo.core.storage.project import ProjectContext
from datmo.core.task import prespawn
from datmo.core.task.process import alive, effective, start_time
from datmo.core.task.spec import is_secret
from datmo.errors import DatmoError

POLL_S = 0.05
REFILL_S = 1.0
Say = Callable[[str], None]


def host() -> str:
    """This machine, as leases name it: its name and this boot (a reboot frees all)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()[:8]
    except OSError:
        boot = ""
    return f"{socket.gethostname()}:{boot}"


def gpu_pool(wanted: str | None) -> list[str]:
    """The GPUs a worker hands out: those given (indexes), else every one it sees."""
    if wanted:
        ids = [p.strip() for p in wanted.split(",") if p.strip()]
        if not all(p.isdigit() for p in ids) or len(set(ids)) != len(ids):
            from datmo.errors import UsageError

            raise UsageError(f"--gpus '{wanted}' must be GPU indexes such as 0,1")
        return ids
    from datmo.core.executor.local import select_gpus

    try:
        visible, _ = select_gpus("all", os.environ.get("CUDA_VISIBLE_DEVICES"))
    except DatmoError:
        return []  # no GPU here
    if visible is None:
        from datmo.core.executor.local import _gpu_table

        return [idx for idx, _, _ in _gpu_table() or []]
    return [g for g in visible.split(",") if g]


class Worker:
    """Dispatches staged runs until none is left (or it is told to stop)."""

    def __init__(
        self,
        ctx: ProjectContext,
        slots: int,
        gpus: list[str],
        sweep_id: str | None = None,
        say: Say | None = None,
        on_end: Callable[[Run], None] | None = None,
    ) -> None:
        self.ctx, self.slots, self.gpus, self.sweep_id = ctx, slots, gpus, sweep_id
        self.say = say or (lambda _: None)
        self.on_end = on_end
        self.id = new_id()[:12]
        self.host = host()
        self.me = {"pid": os.getpid(), "start": start_time(os.getpid()), "launcher": True}
        self.mine: dict[str, str] = {}  # run id -> its last known status
        self.spares: dict[str, subprocess.Popen[bytes]] = {}  # a warm supervisor per executor
        self.blobs = workcopy.Blobs()  # the code of the copies it fills, read once
        self.stopping = ""  # "", "drain": start no more, "now": stop what runs too
        self.ended, self.refilled, self.refill_error = True, 0.0, ""

    # -- the loop -------------------------------------------------------------------
    def run(self, should_stop: Callable[[], str] = lambda: "") -> int:
        """Work until nothing is left to do; 0 when every run it started succeeded, 1 when
        one failed or was lost, 130 when stopped."""
        try:
            while True:
                self.stopping = should_stop() or self.stopping
                if self.stopping == "now":
                    self.stop_mine()
                active = self.follow()
                if not self.stopping:
                    requeue_lost(self.ctx, self.sweep_id)
                    self.refill(active)
                    self.dispatch(active)
                    active = sum(s == RUNNING for s in self.mine.values())
                if not active and (self.stopping or not self.waiting()):
                    break
                time.sleep(POLL_S)
        finally:
            for proc in self.spares.values():
                task.dismiss(proc)
        if self.stopping == "now":
            return 130
        return 0 if all(s == SUCCESS for s in self.mine.values()) else 1

    def follow(self) -> int:
        """Take in how this worker's runs stand; how many still run."""
        active = 0
        for run_id, status in list(self.mine.items()):
            if status != RUNNING:
                continue
            try:
                now = effective(records.read(self.ctx.store, run_id))
            except DatmoError:
                self.mine[run_id] = LOST  # deleted by hand while it ran
                continue
            if now.status == LOST:
                runs.settle_lost(self.ctx, now)
            self.mine[run_id] = now.status
            if not now.finished:
                active += 1
                continue
            self.ended = True
            if self.on_end:
                self.on_end(now)
            else:
                self.say(f"run {run_id[:8]} {now.status}")
        return active

    def refill(self, active: int) -> None:
        """Let Bayesian sweeps stage their next trials: at the start, when a run ended,
        and at most once a second otherwise (another worker's runs end too)."""
        now = time.monotonic()
        if active >= self.slots or (not self.ended and now - self.refilled < REFILL_S):
            return
        self.ended, self.refilled = False, now
        try:
            sweeps.refill(self.ctx, self.sweep_id, self.slots, self.say)
        except DatmoError as e:
            if str(e) != self.refill_error:  # said once, not every second
                self.refill_error = str(e)
                self.say(f"sweeps: {e}")

    def waiting(self) -> bool:
        return bool(queued(self.ctx, self.sweep_id))

    def stop_mine(self) -> None:
        for run_id, status in self.mine.items():
            if status == RUNNING:
                with contextlib.suppress(DatmoError):
                    task.request_stop(self.ctx, records.read(self.ctx.store, run_id))

    # -- starting runs --------------------------------------------------------------
    def dispatch(self, active: int) -> None:
        while active < self.slots:
            claimed = self.claim()
            if claimed is None:
                return
            self.start(claimed)
            active += 1

    def claim(self) -> Run | None:
        """The next staged run that fits, made this worker's (RUNNING, under the lock)."""
        store = self.ctx.store
        with store.lock():
            free = self.free_gpus()
            for run in queued(self.ctx, self.sweep_id):
                need = int(run.options.get("num_gpus") or 0)
                if need > len(self.gpus):
                    why = f"it asks for {need} GPU(s) and this worker has {len(self.gpus)}"
                    records.update(store, run.id, status=FAILED, ended_at=utcnow(), error=why)
                    self.mine[run.id] = FAILED
                    self.say(f"run {run.id[:8]} FAILED: {why}")
                    continue
                if need > len(free):
                    continue  # it waits for more GPUs; a later one may fit (backfill)
                leased = free[:need]
                options = dict(run.options)
                if leased:
                    options["gpus"] = ",".join(leased)
                attempts = int(run.queue.get("attempts") or 0) + 1
                queue = {**run.queue, "worker": self.id, "host": self.host, "gpus": leased}
                queue["attempts"] = attempts
                claimed = records.update(
                    store,
                    run.id,
                    status=RUNNING,
                    started_at=utcnow(),
                    supervisor=self.me,
                    options=options,
                    queue=queue,
                    workdir=workcopy.relpath(run.id),
                )
                self.mine[run.id] = RUNNING
                return claimed
        return None

    def free_gpus(self) -> list[str]:
        """This worker's GPUs that no active run on this host holds."""
        if not self.gpus:
            return []
        held: set[str] = set()
        for run in records.query(self.ctx.store, "status=RUNNING").runs:
            if run.queue.get("host") == self.host and effective(run).status == RUNNING:
                held.update(run.queue.get("gpus") or [])
        return [g for g in self.gpus if g not in held]

    def start(self, run: Run) -> None:
        ctx = self.ctx
        try:
            before = snapshots.get(ctx, run.before_snapshot_id or "")
            workcopy.make(ctx, before, run.id, self.blobs)
            proc = self.spares.pop(run.executor, None)
            if proc is None or proc.poll() is not None:
                proc = prespawn.spawn(["--early", run.executor], cwd=str(ctx.root))
            # The next one warms up while this run's task starts.
            self.spares[run.executor] = prespawn.spawn(["--early", run.executor], cwd=str(ctx.root))
            task.hand_over(ctx, run, proc, self.env_of(run), detach=True)
            self.say(f"run {run.id[:8]} started: {run.command}")
        except DatmoError as e:
            self.mine[run.id] = FAILED
            self.say(f"run {run.id[:8]} could not start: {e}")
            with contextlib.suppress(DatmoError):
                now = records.read(ctx.store, run.id)
                if now.status == RUNNING and now.supervisor == self.me:  # still ours
                    task.not_started(ctx, run, str(e))

    @staticmethod
    def env_of(run: Run) -> dict[str, str]:
        """The task's variables: the recorded ones, and secrets from this worker's own
        environment (their values are never stored)."""
        env = dict(run.env)
        for name in run.secret_env:
            if name in os.environ and is_secret(name):
                env[name] = os.environ[name]
        return env


def queued(ctx: ProjectContext, sweep_id: str | None = None) -> list[Run]:
    """Staged runs in the order a worker takes them: higher priority, then oldest first."""
    found = records.query(ctx.store, "status=QUEUED").runs
    if sweep_id:
        found = [r for r in found if r.sweep_id == sweep_id]
    return sorted(found, key=lambda r: (-int(r.queue.get("priority") or 0), r.created_at, r.id))


def requeue_lost(ctx: ProjectContext, sweep_id: str | None = None) -> list[str]:
    """Queued runs lost with their worker before their supervisor took over: queued again
    if they have retries left, else recorded LOST. Their ids."""
    store = ctx.store
    done = []
    for run in records.query(store, "status=RUNNING").runs:
        if not run.queue or (sweep_id and run.sweep_id != sweep_id):
            continue
        if effective(run).status != LOST:
            continue
        with store.lock():
            now = records.read(store, run.id)
            sup = now.supervisor
            if now.status != RUNNING or alive(sup.get("pid"), sup.get("start")):
                continue  # taken care of meanwhile
            if int(now.queue.get("attempts") or 0) <= int(now.queue.get("retry") or 0):
                if now.workdir:
                    workcopy.remove(ctx, now.workdir)
                queue = {k: v for k, v in now.queue.items() if k not in ("worker", "gpus")}
                records.update(
                    store, now.id, status=QUEUED, supervisor={}, workdir=None, queue=queue
                )
            else:
                runs.settle_lost(ctx, effective(now))
            done.append(now.id)
    return done
