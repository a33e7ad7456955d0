"""datmo inside a task: record metrics and config for the run that is running.

    import datmo
    datmo.log_config(lr=0.01, layers=4)
    for epoch in range(10):
        datmo.log_metrics(step=epoch, loss=loss, acc=acc)

Standard library only: this file is mounted into task containers as is. Each
call appends one JSON line to the run's metrics file ($DATMO_METRICS_FILE);
outside a datmo run the calls only warn once.
"""

import contextlib
import json
import math
import os
import sys
import time

__all__ = ["log_config", "log_metrics"]
_warned = [False]


def _plain(value):  # type: ignore[no-untyped-def]
    # numpy scalars and tensors with .item(); non-finite floats become strings (JSON has none)
    if hasattr(value, "item") and callable(value.item):
        with contextlib.suppress(TypeError, ValueError):
            value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return str(value)


def _append(kind, values, step=None):  # type: ignore[no-untyped-def]
    path = os.environ.get("DATMO_METRICS_FILE")
    if not path:
        if not _warned[0]:
            _warned[0] = True
            print(f"datmo: not inside a datmo run; {kind} not recorded", file=sys.stderr)
        return
    doc = {"kind": kind, "time": time.time(), "values": {k: _plain(v) for k, v in values.items()}}
    if step is not None:
        doc["step"] = _plain(step)
    line = json.dumps(doc, sort_keys=True) + "\n"
    # One O_APPEND write per record keeps lines whole when several processes log at once.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def log_metrics(step=None, **values):  # type: ignore[no-untyped-def]
    """Record metric values, optionally at a step; the last value of each is the run's."""
    _append("metrics", values, step)


def log_config(**values):  # type: ignore[no-untyped-def]
    """Record config values (hyperparameters) used by the run."""
    _append("config", values)
