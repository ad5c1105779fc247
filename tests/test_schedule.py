"""The arrival schedule and the request stream: counts, rates, Poisson gaps within
statistical bounds (fixed seeds), stage boundaries, and the split over processes."""

from __future__ import annotations

import hashlib
import math
import statistics
from collections import Counter

import pytest

from harness.load.schedule import NS, IntendedCounter, arrivals, process_arrivals, segments
from harness.load.workload import Workload
from harness.scenario import DataSpec, LoadSpec, Operations, Stage


def load(*stages: tuple[float, float], arrival: str = "poisson") -> LoadSpec:
    return LoadSpec(stages=tuple(Stage(r, d) for r, d in stages), arrival=arrival)


def test_segments_warmup_then_stages():
    segs = segments(load((100, 2), (300, 1)), warmup_s=1.5)
    assert [(s.start_ns, s.end_ns, s.rate) for s in segs] == [
        (0, 1_500_000_000, 100), (1_500_000_000, 3_500_000_000, 100),
        (3_500_000_000, 4_500_000_000, 300)]


def test_uniform_is_exact():
    offs = list(arrivals(segments(load((200, 5), arrival="uniform"), 0), "uniform", 1))
    assert len(offs) == 1000
    gaps = {b - a for a, b in zip(offs, offs[1:], strict=False)}
    assert gaps == {5_000_000}
    assert offs[0] == 0 and offs[-1] < 5 * NS


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_poisson_count_and_mean_gap(seed):
    rate, dur = 1000.0, 20.0
    offs = list(arrivals(segments(load((rate, dur)), 0), "poisson", seed))
    n = len(offs)
    # Count ~ Poisson(20000): within 5 standard deviations.
    assert abs(n - rate * dur) < 5 * math.sqrt(rate * dur)
    gaps = [(b - a) / NS for a, b in zip(offs, offs[1:], strict=False)]
    mean = statistics.fmean(gaps)
    # Mean of ~20000 exponential gaps: standard error 1/rate/sqrt(n).
    assert abs(mean - 1 / rate) < 5 * (1 / rate) / math.sqrt(n)
    # Exponential: standard deviation equals the mean (within 5 %).
    assert statistics.pstdev(gaps) == pytest.approx(mean, rel=0.05)
    assert all(0 <= o < dur * NS for o in offs) and offs == sorted(offs)


def test_same_seed_same_schedule_other_seed_differs():
    segs = segments(load((500, 2)), 1)
    assert list(arrivals(segs, "poisson", 7)) == list(arrivals(segs, "poisson", 7))
    assert list(arrivals(segs, "poisson", 7)) != list(arrivals(segs, "poisson", 8))


@pytest.mark.parametrize("arrival", ["uniform", "poisson"])
def test_stage_boundaries(arrival):
    segs = segments(load((100, 4), (1000, 4), (300, 4), arrival=arrival), 0)
    offs = list(arrivals(segs, arrival, 5))
    per_stage = Counter(o // (4 * NS) for o in offs)
    for i, rate in enumerate((100, 1000, 300)):
        expected = rate * 4
        tolerance = 0 if arrival == "uniform" else 5 * math.sqrt(expected)
        assert abs(per_stage[i] - expected) <= tolerance, (i, per_stage)
    assert offs == sorted(offs) and offs[-1] < 12 * NS


@pytest.mark.parametrize("count", [2, 3, 5])
def test_process_split_is_a_partition(count):
    segs = segments(load((800, 3)), 0.5)
    full = list(enumerate(arrivals(segs, "poisson", 11)))
    parts = [list(process_arrivals(segs, "poisson", 11, i, count)) for i in range(count)]
    merged = sorted(x for p in parts for x in p)
    assert merged == full
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    for i, p in enumerate(parts):
        assert all(k % count == i for k, _ in p)


def test_intended_counter_matches_the_schedule():
    segs = segments(load((250, 3)), 1.0)
    warm = NS
    offs = list(arrivals(segs, "poisson", 4))
    total = 0
    per_proc = [IntendedCounter(segs, "poisson", 4, i, 2, warm) for i in range(2)]
    for second in range(-1, 3):
        want = sum(1 for o in offs if warm + second * NS <= o < warm + (second + 1) * NS)
        got = sum(c.count_until(c.second_boundary(second)) for c in per_proc)
        assert got == want
        total += got
    assert total == len(offs)


def test_workload_is_deterministic_and_independent_of_processes():
    ops, data = Operations(get=70, list=10, create=20, list_limit=7), DataSpec(users=50,
                                                                              orders_per_user=4)
    one = [r for _, r in zip(range(3000), Workload(ops, data, "p", "open").own(0, 1),
                             strict=False)]
    three = []
    for i in range(3):
        it = Workload(ops, data, "p", "open").own(i, 3)
        three += [r for _, r in zip(range(1000), it, strict=False)]
    assert sorted(three, key=lambda r: r.k) == one
    counts = Counter(r.op for r in one)
    assert counts["get"] / 3000 == pytest.approx(0.7, abs=0.04)
    assert counts["create"] / 3000 == pytest.approx(0.2, abs=0.04)
    gets = [r.order_id for r in one if r.op == "get"]
    assert 1 <= min(gets) and max(gets) <= 200
    lists = [r for r in one if r.op == "list"]
    assert all(1 <= r.user_id <= 50 and r.limit == 7 for r in lists)
    creates = [r.create for r in one if r.create is not None]
    assert len({c.request_id for c in creates}) == len(creates)
    assert all(1 <= len(c.items) <= 3 and 1 <= c.user_id <= 50 for c in creates)


def _fingerprint(reqs: list) -> str:
    text = "\n".join(f"{r.k}|{r.op}|{r.order_id}|{r.user_id}|{r.limit}|{r.create!r}"
                     for r in reqs)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.mark.parametrize(("ops", "want"), [
    (Operations(get=70, list=10, create=20, list_limit=7), "b977066c098da965"),
    (Operations(create=1), "703459331b276531"),  # one operation: no random number for it
])
def test_workload_stream_is_fixed(ops, want):
    """The requests of a seed do not change between harness versions (fingerprint taken from
    the version that drew every number with random()), so runs stay comparable."""
    data = DataSpec(users=50, orders_per_user=4, seed=7)
    wl = Workload(ops, data, "p", "open")
    assert _fingerprint([wl.draw(k) for k in range(2000)]) == want


@pytest.mark.parametrize("ops", [Operations(get=1), Operations(get=1, list=1, create=1)])
def test_workload_skip_consumes_what_draws_do(ops):
    """skip(n) leaves the generator where n draws would: the next request is the same."""
    data = DataSpec(users=50, orders_per_user=4, seed=3)
    drawn, skipped = Workload(ops, data, "p", "s"), Workload(ops, data, "p", "s")
    for n in (1, 3, 0, 7):
        for k in range(n):
            drawn.draw(k)
        skipped.skip(n)
        assert skipped.draw(99) == drawn.draw(99)
