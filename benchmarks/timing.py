"""Timing helper shared by the benchmark scripts (imported as a sibling module)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import jax


def median_seconds(fn: Callable[[], object], repeats: int, warmup: bool = False) -> float:
    """Median wall time of ``repeats`` calls of ``fn`` (results blocked on).

    ``warmup`` makes one untimed call first, for callers whose ``fn`` has not
    been compiled yet.
    """
    if warmup:
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)
