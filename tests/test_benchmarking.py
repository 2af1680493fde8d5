"""The benchmarks' timing: warm-up calls untimed, then the functions timed in alternating rounds."""

from __future__ import annotations

import pytest

from ctclab.benchmarking import alternated_seconds


def test_functions_are_warmed_up_then_timed_in_alternating_rounds():
    calls: list[str] = []
    times = alternated_seconds([lambda: calls.append("A"), lambda: calls.append("B")], warmup=2, timed=3)
    assert calls == ["A", "A", "B", "B"] + ["A", "B"] * 3
    assert [len(side) for side in times] == [3, 3] and all(t >= 0 for side in times for t in side)


@pytest.mark.parametrize("warmup, timed", [(0, 0), (-1, 2)])
def test_rejects_counts_that_measure_nothing(warmup, timed):
    with pytest.raises(ValueError, match="timed >= 1 and warmup >= 0"):
        alternated_seconds([lambda: None], warmup=warmup, timed=timed)
