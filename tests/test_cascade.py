"""The cascade numbers from a per-second series whose shape is known: pure logic."""

from __future__ import annotations

from collections import Counter

import pytest

from harness.faults.cascade import Cascade
from harness.load.recorder import MergedSecond, new_histogram


def _second(n: int, ok: int, errors: int, ms: float, slow: int = 0) -> MergedSecond:
    """`ok` successes at `ms` (of which `slow` at 20× that), `errors` failures."""
    good, bad = new_histogram(), new_histogram()
    for i in range(ok):
        good.record_value(int((ms * 20 if i < slow else ms) * 1000))  # microseconds
    for _ in range(errors):
        bad.record_value(1000)
    hists = {("get", "ok", "latency"): good}
    if errors:
        hists[("get", "error", "latency")] = bad
    return MergedSecond(n, hists, None, Counter(), ok + errors, ok + errors)


def _cascade(series: list[tuple[int, int, float, int]]) -> Cascade:
    c = Cascade(len(series))
    for n, (ok, errors, ms, slow) in enumerate(series):
        c.on_second(_second(n, ok, errors, ms, slow))
    return c


def test_detect_and_recover_against_the_baseline() -> None:
    # 5 calm seconds, a 3 s fault (half the requests fail), then calm again
    series = [(100, 0, 2.0, 0)] * 5 + [(50, 50, 2.0, 0)] * 3 + [(100, 0, 2.0, 0)] * 12
    (row,) = _cascade(series).numbers([(5.0, 8.0, "payment: kill")])
    assert row["time_to_detect_s"] == 0.0
    assert row["time_to_recover_s"] == 0.0
    assert row["error_rate_during"] == 0.5 and row["goodput_during_rps"] == 50
    assert row["goodput_before_rps"] == 100 and row["baseline_error_rate"] == 0.0
    assert row["goodput_back_s"] == 0.0


def test_goodput_during_a_fault_that_ends_mid_second() -> None:
    """Ended at 8.4 s (a restart takes a while): seconds 5, 6, 7 and 8 are the fault's, and
    goodput during it is theirs over four seconds, never over three."""
    series = [(100, 0, 2.0, 0)] * 5 + [(50, 50, 2.0, 0)] * 4 + [(100, 0, 2.0, 0)] * 11
    (row,) = _cascade(series).numbers([(5.2, 8.4, "payment: kill")])
    assert row["goodput_during_rps"] == 50 and row["error_rate_during"] == 0.5


def test_goodput_that_stays_collapsed_after_the_trigger() -> None:
    """A metastable shape: the trigger ends at 8 s, goodput stays at half for the rest of
    the window; another run where it comes back 4 s after the end."""
    stuck = [(100, 0, 2.0, 0)] * 5 + [(20, 80, 2.0, 0)] * 3 + [(50, 50, 2.0, 0)] * 12
    (row,) = _cascade(stuck).numbers([(5.0, 8.0, "payment: delay")])
    assert row["goodput_back_s"] is None
    healed = [(100, 0, 2.0, 0)] * 5 + [(20, 80, 2.0, 0)] * 7 + [(100, 0, 2.0, 0)] * 8
    (row,) = _cascade(healed).numbers([(5.0, 8.0, "payment: delay")])
    assert row["goodput_back_s"] == 4.0


def test_one_slow_request_does_not_hold_recovery_off() -> None:
    """Forty requests a second: a single slow one makes its second's p99 twenty times the
    baseline, but the ten seconds together stay under 1.5× it: recovered at once."""
    series = [(40, 0, 2.0, 0)] * 5 + [(0, 40, 2.0, 0)] * 2 + [(40, 0, 2.0, 0)] * 3 \
        + [(40, 0, 2.0, 1)] + [(40, 0, 2.0, 0)] * 9
    (row,) = _cascade(series).numbers([(5.0, 7.0, "x")])
    assert row["time_to_recover_s"] == 0.0


def test_recovery_waits_for_the_tail_and_for_whole_seconds() -> None:
    # after the fault (ends at 6.4 s), three seconds half of whose requests are 20× slower
    series = [(100, 0, 2.0, 0)] * 5 + [(100, 0, 2.0, 0)] * 2 + [(100, 0, 2.0, 50)] * 3 \
        + [(100, 0, 2.0, 0)] * 10
    (row,) = _cascade(series).numbers([(5.0, 6.4, "x")])
    # from second 7 (the first whole one after 6.4 s), any 10 s holding a slow second has
    # ≥ 5 % slow requests; the first without one starts at 10
    assert row["time_to_recover_s"] == pytest.approx(10 - 6.4)
    never = _cascade([(100, 0, 2.0, 0)] * 5 + [(0, 100, 2.0, 0)] * 15)
    (row,) = never.numbers([(5.0, 6.0, "x")])
    assert row["time_to_recover_s"] is None and row["time_to_detect_s"] == 0.0
