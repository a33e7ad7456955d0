"""Metrics and config a task reported: its metrics file and `key: number` output lines."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# "loss: 0.25" or "val_acc : 91" alone on a line; not "time: 12:30" nor "note: see 3 files".
_LINE = re.compile(
    rb"^\s*([A-Za-z_][\w.\-/]{0,63})\s*:\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


@dataclass
class Reported:
    metrics: dict[str, Any] = field(default_factory=dict)  # last value of each
    config: dict[str, Any] = field(default_factory=dict)
    series: dict[str, list[list[Any]]] = field(default_factory=dict)  # key -> [[step, value, time]]

    def add_metric(self, key: str, value: Any, step: Any, when: float) -> None:
        self.metrics[key] = value
        self.series.setdefault(key, []).append([step, value, when])


def number(text: bytes) -> int | float:
    s = text.decode()
    try:
        return int(s)
    except ValueError:
        return float(s)


class OutputCapture:
    """Feeds output chunks; collects `key: number` lines as metrics."""

    def __init__(self) -> None:
        self._partial = b""
        self.found: list[tuple[str, int | float, float]] = []

    def feed(self, chunk: bytes) -> None:
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line)
        if len(self._partial) > 65536:  # a line that never ends is not a metric
            self._partial = b""

    def close(self) -> None:
        if self._partial:
            self._line(self._partial)
            self._partial = b""

    def _line(self, line: bytes) -> None:
        m = _LINE.match(line.rstrip(b"\r"))
        if m:
            self.found.append((m.group(1).decode(), number(m.group(2)), time.time()))


def collect(metrics_file: Path, captured: list[tuple[str, int | float, float]]) -> Reported:
    """Merge what the task logged through the SDK with what its output showed, in time order."""
    out = Reported()
    events: list[tuple[float, str, Any, Any]] = [(t, k, v, None) for k, v, t in captured]
    try:
        lines = metrics_file.read_bytes().splitlines()
    except FileNotFoundError:
        lines = []
    for raw in lines:
        try:
            doc = json.loads(raw)
            values = doc["values"]
            if not isinstance(values, dict):
                continue
        except (ValueError, KeyError, TypeError):
            continue  # a task killed mid-write leaves a torn last line; skip it
        when = float(doc.get("time", 0))
        if doc.get("kind") == "config":
            out.config.update(values)
        elif doc.get("kind") == "metrics":
            events += [(when, k, v, doc.get("step")) for k, v in values.items()]
    for when, key, value, step in sorted(events, key=lambda e: e[0]):
        out.add_metric(key, value, step, when)
    return out
