"""Metrics and config a task reported, read from its metrics file.

The file (`.datmo/run-data/<id>/metrics.jsonl`) is one JSON line per event: the task SDK
appends "metrics" and "config" lines; the supervisor appends a "captured" line for each
line of output that reads as metrics, as it sees it. So the file is the whole story, in
the order it happened, even while the run goes on, and a killed supervisor loses none of
it. The rules for turning it into a run's metrics:
  - a value the task logged with the SDK wins: once a key was logged, the output's
    values of that key are not used;
  - a captured key that is also a config key (`seed: 42`, `lr: 1e-3`) is not a metric;
  - each metric keeps its series, its last value (the run's), its minimum and maximum.
Captured lines: `key: number` alone on a line, or several such pairs on one line
separated by ` - `, `, ` or ` | ` as Keras prints them (`epoch 3/10 - loss: 0.25 - acc:
0.91`); a line `Epoch N/M` gives the step of the values after it. A key ending in "ing"
(`Downloading: 100`) is progress, not a metric.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_NUMBER = rb"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
# "loss: 0.25" or "val_acc : 91"; not "time: 12:30" nor "note: see 3 files".
_PAIR = re.compile(rb"^\s*([A-Za-z_][\w.\-/]{0,63})\s*:\s*(" + _NUMBER + rb")\s*$")
_SEPARATORS = re.compile(rb"\s+-\s+|,\s+|\s+\|\s+")
_STEP = re.compile(rb"^\s*(?:epoch|step|iter(?:ation)?)\s*:?\s*(\d+)(?:\s*/\s*\d+)?\s*$", re.I)
# Other parts of a Keras progress line: "1875/1875 [=====>...]", "3s 1ms/step", "ETA: 0s".
_PROGRESS = re.compile(
    rb"^\s*(?:\d+/\d+(?:\s*\[[^\]]*\])?|\d+(?:\.\d+)?[mun]?s(?:\s+\d+(?:\.\d+)?[mun]?s/\w+)?"
    rb"|ETA:\s*\S+)\s*$"
)

Event = tuple[str, dict[str, Any], Any, float]  # kind, values, step, time


def number(text: bytes) -> int | float:
    s = text.decode()
    try:
        return int(s)
    except ValueError:
        return float(s)


def parse_line(line: bytes, step: int | None) -> tuple[dict[str, int | float], int | None]:
    """(the metrics on one output line, the step they belong to)."""
    m = _PAIR.match(line)
    if m:
        key = m.group(1).decode()
        return ({} if key.lower().endswith("ing") else {key: number(m.group(2))}), step
    parts = _SEPARATORS.split(line)
    if len(parts) < 2 and not _STEP.match(line):
        return {}, step
    values: dict[str, int | float] = {}
    own_step = step
    for part in parts:
        pair, marker = _PAIR.match(part), _STEP.match(part)
        if pair:
            key = pair.group(1).decode()
            if not key.lower().endswith("ing"):
                values[key] = number(pair.group(2))
        elif marker:
            own_step = int(marker.group(1))
        elif not _PROGRESS.match(part):
            return {}, step  # some other text: not a line of metrics
    return values, own_step


class OutputCapture:
    """Feeds output chunks; hands each line's metrics to sink(values, step, time)."""

    def __init__(self, sink: Callable[[dict[str, Any], int | None, float], None]) -> None:
        self.sink = sink
        self._partial = b""
        self._step: int | None = None  # from the last "Epoch N/M" line

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

    def _line(self, raw: bytes) -> None:
        line = raw.rstrip(b"\r").rsplit(b"\r", 1)[-1]  # a progress bar redraws with \r
        values, step = parse_line(line, self._step)
        if _STEP.match(line):
            self._step = step
        if values:
            self.sink(values, step, time.time())


def appender(path: Path) -> Callable[[dict[str, Any], int | None, float], None]:
    """A sink that appends captured values to the metrics file, one line each, with the
    same single O_APPEND write the SDK uses, so lines stay whole."""

    def sink(values: dict[str, Any], step: int | None, when: float) -> None:
        doc: dict[str, Any] = {"kind": "captured", "time": when, "values": values}
        if step is not None:
            doc["step"] = step
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(doc, sort_keys=True) + "\n").encode())
        finally:
            os.close(fd)

    return sink


@dataclass
class Reported:
    metrics: dict[str, Any] = field(default_factory=dict)  # last value of each
    config: dict[str, Any] = field(default_factory=dict)  # what the task logged
    series: dict[str, list[list[Any]]] = field(default_factory=dict)  # key -> [[step, v, t]]
    ranges: dict[str, list[Any]] = field(default_factory=dict)  # key -> [min, max]


class _Series:
    """One metric from one source: its points, last value, minimum and maximum."""

    def __init__(self) -> None:
        self.points: list[list[Any]] = []
        self.last: Any = None
        self.range: list[Any] | None = None

    def add(self, step: Any, value: Any, when: float) -> None:
        self.points.append([step, value, when])
        self.last = value
        if type(value) in (int, float):  # not bools, not the text of a NaN
            r = self.range
            self.range = [value, value] if r is None else [min(r[0], value), max(r[1], value)]


class MetricsReader:
    """Reads a metrics file as it grows: only what was appended since the last read, so
    following a long run costs what it logs, not what it has logged."""

    def __init__(self, path: Path, config_keys: Iterable[str] = ()) -> None:
        self.path = path
        self.config_keys = set(config_keys)  # the run's given config
        self.pos = 0
        self.config: dict[str, Any] = {}
        self.logged: dict[str, _Series] = {}  # through the SDK
        self.captured: dict[str, _Series] = {}  # from the output

    def read(self) -> bool:
        """Take in the whole lines appended since; True when there were any."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                chunk = f.read()
        except FileNotFoundError:
            return False
        cut = chunk.rfind(b"\n") + 1  # a line still being written waits for the next read
        self.pos += cut
        found = False
        for raw in chunk[:cut].splitlines():
            event = _event(raw)
            if event is None:
                continue
            found = True
            kind, values, step, when = event
            if kind == "config":
                self.config.update(values)
                continue
            into = self.logged if kind == "metrics" else self.captured
            for key, value in values.items():
                into.setdefault(key, _Series()).add(step, value, when)
        return found

    def result(self) -> Reported:
        """The metrics, config and series so far, by the rules of the module docstring."""
        out = Reported(config=dict(self.config))
        not_metrics = self.config_keys | self.config.keys()
        chosen = list(self.logged.items()) + [
            (k, s)
            for k, s in self.captured.items()
            if k not in self.logged and k not in not_metrics
        ]
        for key, s in chosen:
            out.metrics[key] = s.last
            out.series[key] = s.points
            if s.range is not None:
                out.ranges[key] = list(s.range)
        return out


def _event(raw: bytes) -> Event | None:
    try:
        doc = json.loads(raw)
        values = doc["values"]
        kind = doc.get("kind")
        if not isinstance(values, dict) or kind not in ("metrics", "config", "captured"):
            return None
        return kind, values, doc.get("step"), float(doc.get("time", 0))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # a task killed mid-write leaves a torn last line; skip it


def collect(metrics_file: Path, config_keys: Iterable[str] = ()) -> Reported:
    """Everything a finished run's metrics file says."""
    reader = MetricsReader(metrics_file, config_keys)
    reader.read()
    return reader.result()
