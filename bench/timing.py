"""Timing one call, for the benches."""

from __future__ import annotations

import time


def wall_seconds(function, *args) -> float:
    """Wall-clock seconds that ``function(*args)`` takes (its result is dropped)."""
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start
