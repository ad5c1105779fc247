"""The max-rate search on synthetic targets whose capacity is known: pure logic, no process."""

from __future__ import annotations

import pytest

from harness.sweep.search import Probe, find_max


def synthetic(capacity: float, saturates_at: float = float("inf")):
    seen: list[float] = []

    def probe(rate: float) -> Probe:
        seen.append(rate)
        return Probe(rate, held=rate <= capacity, saturated=rate >= saturates_at)
    return probe, seen


@pytest.mark.parametrize("capacity", [37, 730, 1234, 9999])
@pytest.mark.parametrize("start", [10, 100, 5000])
def test_finds_a_known_capacity_within_ten_percent(capacity: float, start: float) -> None:
    probe, seen = synthetic(capacity)
    s = find_max(probe, start, precision=0.05, max_probes=20)
    assert s.bound == "target", s
    assert s.sustained is not None and 0.9 * capacity <= s.sustained <= capacity
    assert s.broke_at is not None and s.broke_at > capacity
    assert len(seen) <= 20 and [p.rate for p in s.probes] == seen


def test_a_saturated_probe_never_decides_the_limit() -> None:
    """The generator falls behind at 500 while the target would carry 730: the search stops
    at the saturated probe and reports at least 400 (the last held), bounded by the generator,
    never 500 or the bisection a break there would have started."""
    probe, seen = synthetic(730, saturates_at=500)
    s = find_max(probe, 100)
    assert seen == [100, 200, 400, 800]
    assert s.bound == "generator" and s.sustained == 400 and s.broke_at is None
    assert "generator saturated" in s.describe()


def test_bounded_by_probes_and_ceiling() -> None:
    probe, _ = synthetic(10**9)
    s = find_max(probe, 100, ceiling=1000)
    assert (s.bound, s.sustained) == ("range", 1000)
    probe, seen = synthetic(730)
    s = find_max(probe, 100, max_probes=3)
    assert len(seen) == 3 and s.bound == "probes" and s.sustained == 400


def test_nothing_holds() -> None:
    probe, _ = synthetic(0)
    s = find_max(probe, 64)
    assert s.sustained is None and s.bound == "probes"
    assert s.describe() == "no probe held"
