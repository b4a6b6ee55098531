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
    return interleaved_median_seconds({"fn": fn}, repeats)["fn"]


def interleaved_median_seconds(fns: dict[str, Callable[[], object]], repeats: int) -> dict:
    """Median wall time of each of ``fns``, timed in turns (a, b, a, b, ...).

    Side-by-side numbers on a shared machine drift with its load; taking turns
    exposes every contender to the same drift, where timing one after the other
    would hand one of them a quiet minute. Every ``fn`` must be compiled already.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}
