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
    """The generator falls behind from 500 while the target would carry 730: no void probe
    counts as a break, but each bounds the search, which bisects below the lowest of them and
    reports at least the highest rate that held (within 5 % of 500), bounded by the
    generator at 500: never 730's bracket, never a break."""
    probe, seen = synthetic(730, saturates_at=500)
    s = find_max(probe, 100)
    assert seen[:4] == [100, 200, 400, 800] and len(seen) <= 12
    assert s.bound == "generator" and s.broke_at is None and s.void_at == 500
    assert s.sustained is not None and 0.95 * 500 <= s.sustained < 500
    assert all(p.held for p in s.probes if p.rate < 500)
    assert s.describe() == f"{s.sustained:g} req/s or more: the generator saturated at 500 req/s"


def test_a_lagging_void_probe_is_worded_as_lag() -> None:
    """A probe voided while the generator kept the rate (its lag, not its pace) bounds the
    search the same way, and the verdict says the generator lagged there, not saturated."""
    def probe(rate: float) -> Probe:
        return Probe(rate, held=rate < 500, saturated=rate >= 500, lagging=rate >= 500)
    s = find_max(probe, 100)
    assert s.bound == "generator" and s.void_at == 500 and s.void_lagging
    assert s.describe().endswith("or more: the generator lagged (it kept the rate; its lag "
                                 "could account for a fifth or more of the p99) at 500 req/s"), \
        s.describe()
    assert {p.void_word for p in s.probes} == {"", "lagging"}


def test_a_break_below_the_generators_limit_is_the_targets() -> None:
    """The target breaks above 300, the generator from 350: the void probes (400, then 350)
    bound the bracket, and the target's own break below them decides, within 5 %."""
    probe, _ = synthetic(300, saturates_at=350)
    s = find_max(probe, 100)
    assert s.bound == "target" and s.void_at == 350
    assert s.sustained is not None and 0.95 * 300 <= s.sustained <= 300 < s.broke_at


def test_the_generator_saturating_at_the_first_rate_bisects_down() -> None:
    probe, seen = synthetic(10**6, saturates_at=150)
    s = find_max(probe, 400)
    assert seen[:2] == [400, 200] and s.bound == "generator"
    assert s.sustained is not None and s.sustained < 150 and s.void_at == 150


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
