"""Pausing Python's cyclic garbage collector around bulk work."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """For work that makes a great many objects and no reference cycles (a walk of
    100,000 files, thousands of decoded records): a collection could free none of them,
    yet one runs every few hundred new objects and walks every object alive."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
