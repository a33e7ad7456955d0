"""datmo inside a task: the run's config, and metrics and config recorded for it.

    import datmo
    lr = datmo.config("lr", 0.01)      # the run's config: config.json with -c over it
    datmo.log_config(layers=4)
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

__all__ = ["config", "log_config", "log_metrics", "snapshot"]
_warned = [False]
_config: "list[dict[str, object]]" = []  # read once, on first use


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


def _append(kind, values, step=None, **extra):  # type: ignore[no-untyped-def]
    path = os.environ.get("DATMO_METRICS_FILE")
    if not path:
        if not _warned[0]:
            _warned[0] = True
            print(f"datmo: not inside a datmo run; {kind} not recorded", file=sys.stderr)
        return False
    doc = {"kind": kind, "time": time.time(), "values": {k: _plain(v) for k, v in values.items()}}
    doc.update(extra)
    if step is not None:
        doc["step"] = _plain(step)
    line = json.dumps(doc, sort_keys=True) + "\n"
    # One O_APPEND write per record keeps lines whole when several processes log at once.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)
    return True


def config(key=None, default=None):  # type: ignore[no-untyped-def]
    """The run's config as a dict, or one value of it (default when it has none).

    It is what the run records: the project's config file with `datmo run -c` values
    over it. Outside a datmo run there is none: the defaults are given, with one warning.
    """
    if not _config:
        _config.append(_read_config())
    values = _config[0]
    if key is None:
        return dict(values)
    return values.get(key, default)


def _read_config():  # type: ignore[no-untyped-def]
    path = os.environ.get("DATMO_CONFIG_FILE")
    try:
        if path:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        if os.environ.get("DATMO_CONFIG"):
            return json.loads(os.environ["DATMO_CONFIG"])
    except (OSError, ValueError) as e:
        print(f"datmo: cannot read the run's config ({e}); using the defaults", file=sys.stderr)
        return {}
    if not _warned[0]:
        _warned[0] = True
        print("datmo: not inside a datmo run; config() gives the defaults", file=sys.stderr)
    return {}


def log_metrics(step=None, **values):  # type: ignore[no-untyped-def]
    """Record metric values, optionally at a step; the last value of each is the run's."""
    _append("metrics", values, step)


def log_config(**values):  # type: ignore[no-untyped-def]
    """Record config values (hyperparameters) used by the run."""
    _append("config", values)


class _Snapshots:
    """datmo.snapshot inside a task or workspace: datmo's supervisor takes the snapshot.

    The task cannot reach the project's store, so the request goes through the
    run's metrics file; the snapshot is taken at once, of the project as it is
    then, and create() returns its record (a dict with "id") when datmo answers.
    """

    def create(self, message, config=None, stats=None, label=None, wait=120.0):  # type: ignore[no-untyped-def]
        request = os.urandom(8).hex()
        body = {
            "message": str(message),
            "label": label,
            "config": {k: _plain(v) for k, v in (config or {}).items()},
            "stats": {k: _plain(v) for k, v in (stats or {}).items()},
        }
        if not _append("snapshot", {}, request=request, snapshot=body):
            return None
        replies = os.environ.get("DATMO_REPLIES")
        deadline = time.time() + wait
        while replies and time.time() < deadline:
            try:
                with open(os.path.join(replies, request + ".json")) as f:
                    return json.load(f)
            except (FileNotFoundError, ValueError):
                time.sleep(0.1)
        return None


snapshot = _Snapshots()
