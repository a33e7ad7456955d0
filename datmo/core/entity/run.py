"""The run record: `.datmo/runs/<id>.json`.

A run is the state before (a snapshot), the task performed on it, and the
state after (another snapshot). The JSON record is the truth; the SQLite index
in `.datmo/index.sqlite` is derived from it for fast listing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from datmo.core.entity.base import build, check_row, check_schema, check_types, require
from datmo.errors import CorruptStore

SCHEMA_VERSION = 1

RUNNING, SUCCESS, FAILED, STOPPED, LOST = "RUNNING", "SUCCESS", "FAILED", "STOPPED", "LOST"
QUEUED = "QUEUED"  # staged: its before snapshot taken, waiting for a queue worker
FINAL = frozenset({SUCCESS, FAILED, STOPPED, LOST})


@dataclass(frozen=True)
class Run:
    id: str
    command: str  # as it ran: placeholders filled in
    created_at: str
    type: str = "task"  # task, or a workspace: notebook, jupyterlab, rstudio, terminal
    status: str = RUNNING
    exit_code: int | None = None
    executor: str = "docker"
    environment_id: str | None = None
    image_id: str | None = None
    message: str | None = None
    tags: list[str] = field(default_factory=list)
    command_template: str | None = None  # as typed, when it had placeholders ({lr})
    config: dict[str, Any] = field(default_factory=dict)  # what the task was given and logged
    config_overridden: dict[str, list[Any]] = field(default_factory=dict)  # key: [given, logged]
    metrics: dict[str, Any] = field(default_factory=dict)  # the last value of each
    metric_ranges: dict[str, list[Any]] = field(default_factory=dict)  # key: [min, max]
    options: dict[str, Any] = field(default_factory=dict)  # what `datmo rerun` needs again
    env: dict[str, str] = field(default_factory=dict)  # task environment, secrets left out
    secret_env: list[str] = field(default_factory=list)  # names only; values are never stored
    before_snapshot_id: str | None = None
    after_snapshot_id: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    supervisor: dict[str, Any] = field(default_factory=dict)  # pid, start time, parent pid
    container_id: str | None = None
    process: dict[str, Any] = field(default_factory=dict)  # a local task: pid, start time
    gpus: list[str] = field(default_factory=list)  # the GPUs the task saw
    platform: dict[str, Any] = field(default_factory=dict)
    workdir: str | None = None  # its working copy, relative to the project (None: the tree)
    rerun_of: str | None = None
    sweep_id: str | None = None
    # A queued run: priority, num_gpus, retry, attempts, and the worker and host it went to.
    queue: dict[str, Any] = field(default_factory=dict)
    # A run on Slurm: its job id, what it asked for, the node, attempts, Slurm's last word.
    slurm: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # datmo's own failure, when it is why the run ended
    timings: dict[str, float] = field(default_factory=dict)  # where datmo's own time went
    origin: str | None = None  # pulled: the remote (or bundle) it came from; never pushed
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Run:
        check_schema("run", doc, SCHEMA_VERSION)
        require("run", doc, "id", "command", "created_at")
        known = cls.__dataclass_fields__
        if doc.keys() <= known.keys():
            kwargs = dict(doc)
        else:  # fields of a newer datmo with the same schema version: left out
            kwargs = {k: v for k, v in doc.items() if k in known}
        kwargs["schema_version"] = SCHEMA_VERSION
        check_types("run", cls, kwargs)
        return build(cls, kwargs)

    @classmethod
    def from_row(cls, values: list[Any]) -> Run:
        """A record from the run index: every field's value, in ROW_FIELDS order."""
        if len(values) != len(ROW_FIELDS):
            raise CorruptStore("a run index row has the wrong number of fields")
        check_row("run", cls, ROW_FIELDS, values)
        state = dict(zip(ROW_FIELDS, values, strict=True))
        check_schema("run", state, SCHEMA_VERSION)
        state["schema_version"] = SCHEMA_VERSION
        return build(cls, state)

    def evolve(self, **changes: Any) -> Run:
        return replace(self, **changes)

    @property
    def finished(self) -> bool:
        return self.status in FINAL


# The order of a run's values in the run index (datmo.core.storage.index).
ROW_FIELDS = tuple(Run.__dataclass_fields__)
