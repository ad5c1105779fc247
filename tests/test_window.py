"""The saturation rule (harness/run/window.py): its pure function, and the window that
feeds it the whole seconds' achieved rate, lag p99 and latency p99."""

from __future__ import annotations

from collections import Counter

import pytest

from harness.load.recorder import ACCEPTED, MergedSecond, new_histogram
from harness.run.window import (
    SATURATION_LAG_FLOOR_MS,
    SATURATION_LAG_MS,
    SATURATION_LAG_SHARE,
    Window,
    saturation_reasons,
)


def _old_rule(achieved: float, lag_p99_ms: float) -> bool:
    return achieved < 0.99 or lag_p99_ms > 10.0


@pytest.mark.parametrize(("achieved", "lag", "latency", "flagged"), [
    (1.0, 0.1, 2.0, False),  # lag a twentieth of the tail: the target's figure
    (1.0, 0.3, 0.6, False),  # half of a sub-ms tail: under the floor, not judged
    (1.0, 0.5, 2.5, True),  # at the floor and at 20 %: flagged
    (1.0, 0.5, 2.6, False),  # just under 20 %
    (1.0, 6.5, 13.0, True),  # issue 11: p99 13 ms, half of it lag, unflagged by the old rule
    (1.0, 9.9, 60.0, False),  # 16 % of a long tail: the target's tail
    (1.0, 10.1, 200.0, True),  # the 10 ms clause stands on its own
    (0.98, 0.0, 1.0, True),  # fell short of the schedule
    (1.0, None, None, False),  # nothing measured beyond the count
])
def test_the_rule_on_its_pure_function(achieved: float, lag: float | None,
                                       latency: float | None, flagged: bool) -> None:
    assert bool(saturation_reasons(achieved, lag, latency)) == flagged


def test_a_doubled_p99_is_never_presented_unflagged() -> None:
    """Latency p99 = target p99 + lag p99 with lag ≥ the target's own p99 (a doubled or
    worse figure), for every reported p99 of 1 ms and more: always flagged."""
    for target_ms in (0.5, 1.0, 2.0, 4.6, 5.8, 20.0, 100.0):
        for extra in (1.0, 1.5, 3.0):
            lag = target_ms * extra
            assert saturation_reasons(1.0, lag, target_ms + lag), (target_ms, lag)


def test_the_reasons_say_why() -> None:
    (reason,) = saturation_reasons(1.0, 6.5, 13.0)
    assert reason == "lag p99 is 50% of the latency p99 13.0 ms (20% or more)"
    assert saturation_reasons(0.5, 20.0, 30.0) == [
        "under 99% of the intended requests went out", "lag p99 over 10 ms"]
    assert SATURATION_LAG_SHARE == 0.2 and SATURATION_LAG_FLOOR_MS == 0.5
    assert SATURATION_LAG_MS == 10.0


def _second(n: int, lag_us: int, latency_us: int, accepted_us: int | None = None) -> MergedSecond:
    """One merged second of 100 requests sent on time, lag and latency constant."""
    lag, lat = new_histogram(), new_histogram()
    lag.record_value(lag_us, 100)
    lat.record_value(latency_us, 100)
    hists = {("get", "ok", "latency"): lat}
    if accepted_us is not None:
        acc = new_histogram()
        acc.record_value(accepted_us, 100)
        hists[(ACCEPTED, "ok", "latency")] = acc
    return MergedSecond(n, hists, lag, Counter(), intended=100, started=100)


def test_the_window_relates_lag_to_latency_over_its_whole_seconds() -> None:
    w = Window(duration_s=3, warmup_s=0)
    w.begin(1)
    for n in range(3):
        w.on_second(_second(n, lag_us=3_000, latency_us=6_000))
    judged = w.saturation()
    assert judged is not None and judged.saturated
    assert not _old_rule(judged.achieved, judged.lag_p99_ms or 0)  # the old rule missed it
    assert judged.lag_p99_ms == pytest.approx(3.0, rel=0.01)
    assert judged.latency_p99_ms == pytest.approx(6.0, rel=0.01)


def test_accepted_moments_are_not_the_latency_judged() -> None:
    """A queue's fast accepts must not shrink the latency p99 the lag is compared with."""
    w = Window(duration_s=2, warmup_s=0)
    w.begin(1)
    for n in range(2):
        w.on_second(_second(n, lag_us=600, latency_us=20_000, accepted_us=700))
    judged = w.saturation()
    assert judged is not None and not judged.saturated, judged.reasons


@pytest.mark.parametrize(("lag", "latency", "service", "flagged"), [
    (0.68, 3.63, 2.41, True),  # the gRPC run at 100/s: lag p99 19 %, the tail moved 34 %
    (0.68, 3.63, 3.10, False),  # moved 15 %: the target's tail
    (0.30, 2.00, 1.55, False),  # moved 22 %, but by 0.45 ms: under the floor
    (0.30, 2.50, 2.00, True),  # moved 20 % and 0.5 ms
    (0.68, 3.63, None, False),  # no service time (a run written before it): the lag clause only
])
def test_the_service_time_clause(lag: float, latency: float, service: float | None,
                                 flagged: bool) -> None:
    """Latency minus service time is the lag, request by request: a latency p99 20 % or more
    above the service p99 is a tail the lag moved, whatever the lag p99 alone says."""
    reasons = saturation_reasons(1.0, lag, latency, service)
    assert bool(reasons) == flagged, reasons
    if flagged:
        assert reasons == [f"the lag moved the latency p99 by {(latency - service) / latency:.0%}: "
                           f"{latency:.1f} ms against a service-time p99 of {service:.1f} ms "
                           "(20% or more)"]


def test_the_window_compares_latency_with_service_time() -> None:
    """Lag p99 0.4 ms (10 % of the tail) but the slowest answers were the latest sends: the
    latency p99 is 4 ms against a service p99 of 3 ms. Flagged lagging, not behind."""
    w = Window(duration_s=2, warmup_s=0)
    w.begin(1)
    for n in range(2):
        m = _second(n, lag_us=400, latency_us=4_000)
        svc = new_histogram()
        svc.record_value(3_000, 100)
        m.hists[("get", "ok", "service")] = svc
        w.on_second(m)
    judged = w.saturation()
    assert judged is not None and judged.saturated and not judged.behind, judged
    assert judged.service_p99_ms == pytest.approx(3.0, rel=0.01)
    assert judged.record()["flag"] == "lagging"
    assert judged.record()["service_p99_ms"] == judged.service_p99_ms
