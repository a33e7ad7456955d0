"""Slurm: runs as batch jobs, through Slurm's own commands (sbatch, squeue, scancel).

A run on Slurm is a job whose batch script runs datmo's supervisor on the compute node
(`python -m datmo.cli.slurmjob`); there the task runs as a local process inside the
job's allocation, so the executor that starts it is the local one (SlurmExecutor below).
This module is the client: it checks options (`sbatch --test-only`), submits one job or
one job array, reads jobs' states in one `squeue` call, and cancels. What the records
say is the Slurm controller's (controller/slurm.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field

from datmo.core.executor.local import LocalExecutor
from datmo.errors import DatmoError

# squeue's states that mean the job is over (datmo records them if its supervisor could not).
FINAL = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "SPECIAL_EXIT",
        "REVOKED",
    }
)
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
TIMEOUT_S = 30.0


class SlurmError(DatmoError):
    """Slurm refused, or cannot be reached: one line, Slurm's own words where it has them."""

    exit_code = 125


class SlurmExecutor(LocalExecutor):
    """Inside a job's allocation, on the compute node, a task is a local process."""

    name = "slurm"


@dataclass(frozen=True)
class JobOptions:
    """What a run asks Slurm for; None: the partition's (or the site's) default."""

    partition: str | None = None
    time: str | None = None  # Slurm's forms: minutes, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]
    memory_mb: int | None = None
    cpus: int | None = None
    gpus: int = 0
    account: str | None = None
    qos: str | None = None
    extra: tuple[str, ...] = ()  # --slurm-arg, passed as given

    def args(self) -> list[str]:
        out = []
        for flag, value in (
            ("--partition", self.partition),
            ("--time", self.time),
            ("--account", self.account),
            ("--qos", self.qos),
        ):
            if value:
                out.append(f"{flag}={value}")
        if self.memory_mb:
            out.append(f"--mem={self.memory_mb}M")
        if self.cpus:
            out.append(f"--cpus-per-task={self.cpus}")
        if self.gpus:
            out.append(f"--gres=gpu:{self.gpus}")
        return [*out, *self.extra]

    def warning_lead_s(self) -> int:
        """How long before the time limit the job is warned (SIGUSR1): a minute, or a
        sixth of a short limit, so the supervisor can stop the task and take its after
        snapshot before Slurm kills it."""
        limit = time_limit_s(self.time) if self.time else None
        if limit is None:
            return 60
        return max(10, min(60, limit // 6))


def time_limit_s(text: str) -> int | None:
    """Seconds of a --time in one of Slurm's forms; None for what this does not read
    (sbatch --test-only judges it)."""
    m = _TIME.match(text.strip())
    if not m:
        return None
    days, a, b, c = (int(g) if g else None for g in m.groups())
    if days is None and b is None:  # minutes
        return (a or 0) * 60
    if days is None and c is None:  # MM:SS
        return (a or 0) * 60 + (b or 0)
    if days is None:  # HH:MM:SS
        return (a or 0) * 3600 + (b or 0) * 60 + (c or 0)
    return days * 86400 + (a or 0) * 3600 + (b or 0) * 60 + (c or 0)  # D-HH[:MM[:SS]]


def require() -> None:
    if shutil.which("sbatch") is None:
        raise SlurmError(
            "Slurm's sbatch is not on PATH: run this on a login node of your cluster "
            "(to try Slurm on this machine: bash scripts/slurm.sh start)"
        )


def _error_line(text: str) -> str:
    """Slurm's own message, one line: its first 'error:' line, or its last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "error:" in line:
            return line.split("error:", 1)[1].strip().rstrip(".")
    return lines[-1] if lines else "no answer"


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise SlurmError(
            f"Slurm's {argv[0]} did not answer in {TIMEOUT_S:.0f} s: is its controller up? "
            "(scontrol ping)"
        ) from None
    except OSError as e:
        raise SlurmError(f"cannot run Slurm's {argv[0]}: {e.strerror}") from None


def check(options: JobOptions) -> None:
    """Refuse what Slurm would refuse (an unknown partition, a bad --time, more GPUs than
    any node has, no controller), before anything is made: sbatch --test-only."""
    require()
    out = _run(["sbatch", "--test-only", *options.args(), "--wrap", "true"])
    if out.returncode != 0:
        raise SlurmError(f"Slurm refuses the job: {_error_line(out.stderr or out.stdout)}")


@dataclass(frozen=True)
class Submission:
    script: str  # the batch script, given on stdin
    name: str
    output: str  # the job's stdout and stderr; %j, %A, %a as sbatch reads them
    workdir: str
    array: str | None = None  # "0-19%2"
    after: str | None = None  # start after this job (all of an array) ended
    options: JobOptions = field(default_factory=JobOptions)


def submit(sub: Submission) -> str:
    """Submit one job (or array); its id."""
    require()
    argv = [
        "sbatch",
        "--parsable",
        f"--job-name={sub.name}",
        f"--output={sub.output}",
        f"--chdir={sub.workdir}",
        # Warned before the time limit: the supervisor records TIMEOUT with its snapshot.
        f"--signal=B:USR1@{sub.options.warning_lead_s()}",
        "--requeue",  # a preempted job keeps its run; the record counts its attempts
        *sub.options.args(),
    ]
    if sub.array:
        argv.append(f"--array={sub.array}")
    if sub.after:
        argv.append(f"--dependency=afterany:{sub.after}")
    out = _run(argv, stdin=sub.script)
    if out.returncode != 0:
        raise SlurmError(f"Slurm refuses the job: {_error_line(out.stderr or out.stdout)}")
    job = out.stdout.strip().split(";")[0]  # "id" or "id;cluster"
    if not job.isdigit():
        raise SlurmError(f"sbatch answered '{out.stdout.strip()[:80]}', not a job id")
    return job


@dataclass(frozen=True)
class JobState:
    job: str  # "123", or "123_4" for an array's task
    state: str  # PENDING, RUNNING, COMPLETED, TIMEOUT, OUT_OF_MEMORY, ...
    reason: str  # Slurm's reason: Resources, Priority, NonZeroExitCode, ... ("" for None)
    node: str

    @property
    def final(self) -> bool:
        return self.state in FINAL

    def describe(self) -> str:
        return f"{self.state} ({self.reason})" if self.reason else self.state


def states(jobs: list[str]) -> dict[str, JobState]:
    """The state of each job Slurm still knows (about 5 minutes past its end), in one
    squeue call; a job it forgot is missing from the answer. An array's task ("123_4")
    that has not started is listed by squeue under its array ("123_[4-9%2]", or "123"
    when it was cancelled before it started): those answer for it too."""
    if not jobs:
        return {}
    asked = sorted({*jobs, *(j.split("_")[0] for j in jobs)})
    out = _run(["squeue", "-h", "-t", "all", "-j", ",".join(asked), "-o", "%i|%T|%r|%N"])
    if out.returncode != 0:
        if "Invalid job id" in out.stderr:
            return {}  # none of them is known any more
        raise SlurmError(f"squeue failed: {_error_line(out.stderr)}")
    listed: dict[str, JobState] = {}
    for line in out.stdout.splitlines():
        parts = line.split("|")
        if len(parts) != 4:
            continue
        job, state, reason, node = (p.strip() for p in parts)
        reason = "" if reason in ("None", "(null)") else reason
        for one in _tasks(job):
            listed.setdefault(one, JobState(one, state, reason, node))
    found = {}
    for job in jobs:
        known = listed.get(job) or listed.get(job.split("_")[0])
        if known is not None:
            found[job] = JobState(job, known.state, known.reason, known.node)
    return found


def accounted(jobs: list[str]) -> dict[str, JobState]:
    """Where the site keeps accounting (sacct), the state of jobs squeue has forgotten;
    {} where it does not (as on a cluster without slurmdbd)."""
    if not jobs or shutil.which("sacct") is None:
        return {}
    out = _run(["sacct", "-n", "-P", "-X", "-j", ",".join(jobs), "-o", "JobID,State,NodeList"])
    if out.returncode != 0:
        return {}
    found = {}
    for line in out.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[0] in jobs:
            state = parts[1].split()[0]  # "CANCELLED by 1000"
            found[parts[0]] = JobState(parts[0], state, "", parts[2])
    return found


def _tasks(listed: str) -> list[str]:
    """The job ids one squeue line stands for: "123_4", "123", or "123_[0-3,7%2]"."""
    base, _, rest = listed.partition("_[")
    if not rest:
        return [listed]
    out = []
    for part in rest.rstrip("]").split("%")[0].split(","):
        low, _, high = part.partition("-")
        if low.isdigit() and (not high or high.isdigit()):
            out += [f"{base}_{i}" for i in range(int(low), int(high or low) + 1)]
    return out


def cancel(jobs: list[str], signal: str | None = None) -> None:
    """Cancel jobs; with signal, send it to their batch scripts (our supervisors) instead."""
    if not jobs:
        return
    argv = ["scancel"] if signal is None else ["scancel", "--batch", f"--signal={signal}"]
    out = _run([*argv, *jobs])
    done = ("already completing or completed", "Invalid job id")
    errors = [line for line in out.stderr.splitlines() if not any(d in line for d in done)]
    if out.returncode != 0 and any("error" in line for line in errors):
        raise SlurmError(f"scancel failed: {_error_line(chr(10).join(errors))}")


def max_array_size() -> int:
    """The largest array this site takes (MaxArraySize: indexes 0 to N-1)."""
    out = _run(["scontrol", "show", "config"])
    for line in out.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize" and value.strip().isdigit():
            return int(value.strip())
    return 1001  # Slurm's default


def job_id() -> str:
    """This job's id, inside a job ("123", or "123_4" in an array)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID", "")
