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
import select
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
from datmo.core.task.process import alive, effective, me, this_host
from datmo.core.task.spec import is_secret
from datmo.errors import DatmoError

POLL_S = 0.1  # between looks at the records; answers and local tasks' ends wake it
REFILL_S = 1.0
BACKFILL = 256  # how far down the queue a free slot looks for a run that fits
Say = Callable[[str], None]


def host() -> str:
    """This machine, as leases name it: its name and this boot (a reboot frees all)."""
    return this_host()


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
        self.me = me(launcher=True)
        self.mine: dict[str, str] = {}  # run id -> its last known status
        # Warm supervisors, one per slot and executor: runs that end together start together.
        self.spares: dict[str, list[subprocess.Popen[bytes]]] = {}
        self.blobs = workcopy.Blobs()  # the code of the copies it fills, read once
        self.stopping = ""  # "", "drain": start no more, "now": stop what runs too
        self.ended, self.refilled, self.refill_error = True, 0.0, ""
        self.requeued = 0.0
        self.handing: dict[str, tuple[Run, subprocess.Popen[bytes]]] = {}  # awaiting answers
        self.exits: dict[str, int] = {}  # a pidfd for each local task of ours still running
        self.exited: set[str] = set()  # runs whose task ended (its pidfd said so)
        self.cold = True  # supervisors were taken since the last warm-up

    # -- the loop -------------------------------------------------------------------
    def run(self, should_stop: Callable[[], str] = lambda: "") -> int:
        """Work until nothing is left to do; 0 when every run it started succeeded, 1 when
        one failed or was lost, 130 when stopped."""
        try:
            while True:
                self.stopping = should_stop() or self.stopping
                if self.stopping == "now":
                    self.stop_mine()
                active = self.follow()  # runs whose tasks hold a slot
                if not self.stopping:
                    self.requeue()
                    self.refill(active)
                    self.dispatch(active)
                # Done once every run it started is recorded to its end.
                unfinished = any(s == RUNNING for s in self.mine.values())
                if not unfinished and (self.stopping or not self.waiting()):
                    break
                if self.cold and not self.handing:  # the runs just started are under way
                    self.warm_up()
                self.wait(POLL_S)
        finally:
            for procs in [*self.spares.values(), prespawn.leftover()]:
                for proc in procs:
                    task.dismiss(proc)
            for run_id in list(self.exits):
                self.unwatch(run_id)
        if self.stopping == "now":
            return 130
        return 0 if all(s == SUCCESS for s in self.mine.values()) else 1

    def follow(self) -> int:
        """Take in how this worker's runs stand; how many tasks still hold a slot."""

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
                active += occupies(now)
                self.watch(now)
                continue
            self.unwatch(run_id)
            self.ended = True
            if self.on_end:
                self.on_end(now)
            else:
                self.say(f"run {run_id[:8]} {now.status}")
        return active

    def requeue(self) -> None:
        """Queue again (or record LOST) the runs of dead workers, once a second: a worker
        dies rarely, and the look costs a query."""
        now = time.monotonic()
        if now - self.requeued >= REFILL_S:
            self.requeued = now
            requeue_lost(self.ctx, self.sweep_id)

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
        return bool(queued(self.ctx, self.sweep_id, limit=1))

    def stop_mine(self) -> None:
        for run_id, status in self.mine.items():
            if status == RUNNING:
                with contextlib.suppress(DatmoError):
                    task.request_stop(self.ctx, records.read(self.ctx.store, run_id))

    # -- starting runs --------------------------------------------------------------
    def dispatch(self, active: int) -> None:
        if active < self.slots:
            for claimed in self.claim(self.slots - active):
                self.start(claimed)

    def claim(self, room: int = 1) -> list[Run]:
        """The next staged runs that fit, up to room, made this worker's (RUNNING), in
        one hold of the project lock."""
        store = self.ctx.store
        claimed: list[Run] = []
        with store.lock():
            free = self.free_gpus()
            # The first BACKFILL staged runs: a later one that fits the free GPUs may go
            # before an earlier one that waits for more.
            for run in queued(self.ctx, self.sweep_id, limit=BACKFILL + room):
                if len(claimed) == room:
                    break
                need = int(run.options.get("num_gpus") or 0)
                if need > len(self.gpus):
                    why = f"it asks for {need} GPU(s) and this worker has {len(self.gpus)}"
                    records.update(store, run.id, status=FAILED, ended_at=utcnow(), error=why)
                    self.mine[run.id] = FAILED
                    self.say(f"run {run.id[:8]} FAILED: {why}")
                    continue
                if need > len(free):
                    continue  # it waits for more GPUs; a later one may fit (backfill)
                leased, free = free[:need], free[need:]
                options = dict(run.options)
                if leased:
                    options["gpus"] = ",".join(leased)
                attempts = int(run.queue.get("attempts") or 0) + 1
                queue = {**run.queue, "worker": self.id, "host": self.host, "gpus": leased}
                queue["attempts"] = attempts
                claimed.append(
                    records.update(
                        store,
                        run.id,
                        status=RUNNING,
                        started_at=utcnow(),
                        supervisor=self.me,
                        options=options,
                        queue=queue,
                        workdir=workcopy.relpath(run.id),
                    )
                )
                self.mine[run.id] = RUNNING
        return claimed

    def free_gpus(self) -> list[str]:
        """This worker's GPUs that no active run on this host holds."""
        if not self.gpus:
            return []
        held: set[str] = set()
        for run in records.query(self.ctx.store, "status=RUNNING").runs:
            if run.queue.get("host") == self.host and occupies(effective(run)):
                held.update(run.queue.get("gpus") or [])
        return [g for g in self.gpus if g not in held]

    def start(self, run: Run) -> None:
        ctx = self.ctx
        try:
            before = snapshots.get(ctx, run.before_snapshot_id or "")
            workcopy.make(ctx, before, run.id, self.blobs)
            warm = [p for p in self.spares.get(run.executor, []) if p.poll() is None]
            proc = warm.pop() if warm else prespawn.take() or self.spawn(run.executor)
            self.spares[run.executor] = warm
            # Not waited for: its answer is read as it comes (answers), so this worker
            # goes on starting and following runs meanwhile.
            task.send_orders(ctx, run, proc, self.env_of(run), detach=True)
            self.handing[run.id] = (run, proc)
            self.cold = True  # it took a warm supervisor
        except DatmoError as e:
            self.not_started(run, e)

    def wait(self, timeout: float) -> None:
        """Until a supervisor answers, a task of ours ends, or timeout: a slot frees at
        once rather than at the next look at the records."""
        outs = {p.stdout.fileno(): run_id for run_id, (_, p) in self.handing.items() if p.stdout}
        ready, _, _ = select.select([*outs, *self.exits.values()], [], [], timeout)
        ended = {fd: run_id for run_id, fd in self.exits.items()}
        for fd in ready:
            if fd in outs:
                self.answer(outs[fd])
            elif fd in ended:  # that task ended: no need to hear of it again
                self.unwatch(ended[fd])
                self.exited.add(ended[fd])

    def answer(self, run_id: str) -> None:
        """Read a supervisor's answer to the orders it was handed."""
        run, proc = self.handing.pop(run_id)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode(errors="replace").strip()
        try:
            task.answered(self.ctx, run, proc, line)
            self.say(f"run {run.id[:8]} started: {run.command}")
        except DatmoError as e:
            self.not_started(run, e)

    def watch(self, run: Run) -> None:
        """Be woken when the run's local task ends (a pidfd: readable once it exits)."""
        proc = run.process
        if run.id in self.exits or run.id in self.exited or run.executor != "local" or not proc:
            return
        try:
            fd = os.pidfd_open(int(proc["pid"]))
        except (OSError, AttributeError, KeyError, ValueError):
            return  # gone already, or no pidfd here: the next look at the records tells
        if not alive(proc.get("pid"), proc.get("start")):
            os.close(fd)  # its pid is someone else's now
            return
        self.exits[run.id] = fd

    def unwatch(self, run_id: str) -> None:
        fd = self.exits.pop(run_id, None)
        if fd is not None:
            os.close(fd)

    def not_started(self, run: Run, e: DatmoError) -> None:
        self.mine[run.id] = FAILED
        self.say(f"run {run.id[:8]} could not start: {e}")
        with contextlib.suppress(DatmoError):
            now = records.read(self.ctx.store, run.id)
            if now.status == RUNNING and now.supervisor == self.me:  # still ours
                task.not_started(self.ctx, run, str(e))

    def warm_up(self) -> None:
        """Keep a supervisor waiting for each slot the next runs will take (spawned once
        the last ones have started, not while they start: on a small machine a Python
        start-up is what the runs would wait for)."""
        self.cold = False
        waiting = queued(self.ctx, self.sweep_id, self.slots) if not self.stopping else []
        for executor in {r.executor for r in waiting}:
            warm = [p for p in self.spares.get(executor, []) if p.poll() is None]
            want = min(self.slots, sum(r.executor == executor for r in waiting))
            while len(warm) < want:
                warm.append(self.spawn(executor))
            self.spares[executor] = warm

    def spawn(self, executor: str) -> subprocess.Popen[bytes]:
        return prespawn.spawn(["--early", executor], cwd=str(self.ctx.root))

    @staticmethod
    def env_of(run: Run) -> dict[str, str]:
        """The task's variables: the recorded ones, and secrets from this worker's own
        environment (their values are never stored)."""
        env = dict(run.env)
        for name in run.secret_env:
            if name in os.environ and is_secret(name):
                env[name] = os.environ[name]
        return env


def occupies(run: Run) -> bool:
    """Whether a run holds its slot and GPUs: until its task has ended. Its after
    snapshot is taken by its own supervisor meanwhile, so the next run need not wait."""
    if run.status != RUNNING:
        return False
    proc = run.process  # a local task's process, recorded once it started
    return not (run.executor == "local" and proc and not alive(proc.get("pid"), proc.get("start")))


def queued(ctx: ProjectContext, sweep_id: str | None = None, limit: int | None = None) -> list[Run]:
    """Staged runs in the order a worker takes them: higher priority, then oldest first."""
    return records.queued(ctx.store, sweep_id, limit)


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
