"""Timing for the scripts in ``benchmarks/``: the two sides of a ratio measured in alternation.

On a shared, noisy machine a ratio is only fair when both sides see the same noise, so
:func:`alternated_seconds` warms every function up and then times them in rounds
(A, B, A, B, ...) rather than all of A and then all of B.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any


def seconds(function: Callable[[], Any]) -> float:
    """Wall time of one call."""
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def alternated_seconds(functions: Sequence[Callable[[], Any]], warmup: int, timed: int) -> list[list[float]]:
    """Warm each function up ``warmup`` times, then time ``timed`` rounds; seconds per function, in order."""
    if timed < 1 or warmup < 0:
        raise ValueError(f"need timed >= 1 and warmup >= 0, got timed={timed}, warmup={warmup}")
    for function in functions:
        for _ in range(warmup):
            function()
    times: list[list[float]] = [[] for _ in functions]
    for _ in range(timed):
        for index, function in enumerate(functions):
            times[index].append(seconds(function))
    return times
