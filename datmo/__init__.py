"""datmo: reproducible machine-learning work.

`import datmo` must stay cheap: it is imported by the CLI on every call and
inside task containers. Everything heavier is loaded on first use.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without loading typing (~10 ms with re)
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "config", "log_config", "log_metrics", "runs", "snapshot", "sweep"]


def __getattr__(name: str) -> Any:
    # Lazy attributes keep `datmo --help` from importing the SDK.
    if name in ("snapshot", "runs", "sweep"):
        from datmo import sdk

        return getattr(sdk, name)
    if name in ("config", "log_metrics", "log_config"):
        # The same standard-library code that tasks get mounted into their container.
        from datmo.task_sdk import datmo as task_sdk

        return getattr(task_sdk, name)
    raise AttributeError(f"module 'datmo' has no attribute {name!r}")
