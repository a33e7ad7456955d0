"""The sweep record: `.datmo/sweeps/<id>.json`: one command over a search space. Its
runs are ordinary runs that carry the sweep's id and their point's index (found through
the run index, so staging a thousand points never rewrites this record)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from datmo.core.entity.base import check_schema, check_types, require

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Sweep:
    id: str
    command: str  # the template, as typed: {KEY} placeholders and all
    created_at: str
    space: dict[str, str] = field(default_factory=dict)  # key -> its values, as typed
    search: str = "grid"  # grid, random, or tpe (Bayesian, through Optuna)
    random: int = 0  # how many points a random search draws
    trials: int = 0  # how many trials a tpe search may run
    seed: int = 0
    objective: str | None = None  # "acc:max" or "loss:min"
    executor: str = "local"
    options: dict[str, Any] = field(default_factory=dict)  # the run options of its runs
    points: list[dict[str, Any]] = field(default_factory=list)  # each point's config
    # The tree its runs start from, captured once; resume and later trials use it too.
    base_snapshot_id: str | None = None
    stopped_at: str | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Sweep:
        check_schema("sweep", doc, SCHEMA_VERSION)
        require("sweep", doc, "id", "command", "created_at")
        kwargs = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        kwargs["schema_version"] = SCHEMA_VERSION
        check_types("sweep", cls, kwargs)
        return cls(**kwargs)

    def evolve(self, **changes: Any) -> Sweep:
        return replace(self, **changes)

    @property
    def goal(self) -> tuple[str, bool] | None:
        """(the objective's metric, whether higher is better)."""
        if not self.objective:
            return None
        metric, _, way = self.objective.rpartition(":")
        return metric, way == "max"
