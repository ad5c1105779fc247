"""Resilience policies without processes: the breaker's state machine and the retry budget
on a clock the test moves, the guard's retry rules around a small in-memory downstream,
the [policies] table's one-line refusals, and the control socket's policy query."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.scenario import load_scenario
from harness.scenario.policies import MIN_BULKHEAD, MIN_SHED, Policies, policies_option
from harness.stage.conformance import CONCURRENT_CREATES
from targets.control import FaultSwitch, answer
from targets.core.errors import NotFound, TransportError
from targets.core.model import Order
from targets.policy import config
from targets.policy.breaker import BreakerOpen, CircuitBreaker
from targets.policy.budget import RetryBudget
from targets.policy.events import COUNTERS, EVENTS, PolicyEvents
from targets.policy.guard import Guarded

COMMBENCH = str(Path(sys.executable).parent / "commbench")


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _breaker(clock: Clock, events: PolicyEvents, **kw: float) -> CircuitBreaker:
    spec = config.Breaker(**{"failure_rate": 0.5, "window": 4, "min_calls": 4, "open_s": 1.0,
                             "probes": 2, **kw})  # type: ignore[arg-type]
    return CircuitBreaker("payment", spec, events, clock)


def _call(b: CircuitBreaker, failed: bool) -> None:
    b.admit()
    b.record(failed)


def test_breaker_opens_on_the_failure_rate_and_closes_after_good_probes() -> None:
    clock, events = Clock(), PolicyEvents()
    b = _breaker(clock, events)
    for failed in (False, True, False):
        _call(b, failed)
    assert b.state == "closed"  # three calls: fewer than min_calls, no judgement
    _call(b, True)  # 2 of 4 failed: the rate is reached
    assert b.state == "opened"
    with pytest.raises(BreakerOpen):
        b.admit()
    clock.t += 1.0  # the open time is over: probes go through
    b.admit()
    b.admit()
    assert b.state == "half_open"
    with pytest.raises(BreakerOpen):  # no third probe while two are out
        b.admit()
    b.record(False)
    b.record(False)
    assert b.state == "closed"
    states = [t["state"] for t in events.snapshot()["transitions"]]
    assert states == ["opened", "half_open", "closed"]
    assert events.counts["breaker_rejected"] == 2


def test_a_failing_probe_opens_the_breaker_again() -> None:
    clock, events = Clock(), PolicyEvents()
    b = _breaker(clock, events, window=2, min_calls=2, probes=1)
    _call(b, True)
    _call(b, True)
    clock.t += 1.0
    _call(b, True)
    assert b.state == "opened"
    clock.t += 0.5
    with pytest.raises(BreakerOpen):  # a fresh open time from the failed probe
        b.admit()
    first, second = (t["t_ns"] for t in events.snapshot()["transitions"]
                     if t["state"] == "opened")
    assert second >= first


def test_retry_budget_allows_a_fraction_of_the_window_calls() -> None:
    clock = Clock()
    budget = RetryBudget(0.2, 10.0, clock)
    for _ in range(10):
        budget.called()
    assert [budget.try_retry() for _ in range(3)] == [True, True, False]
    clock.t += 11.0  # the window slid past every call: no allowance left
    budget.called()
    assert not budget.try_retry()


def test_retry_budget_bounds_the_total_as_the_window_slides() -> None:
    """A call and a retry wanted every 10 ms for 5 windows: retries stay within the fraction
    of all calls, not only of each window's."""
    clock = Clock()
    budget = RetryBudget(0.1, 1.0, clock)
    retries = 0
    for _ in range(500):
        clock.t += 0.01
        budget.called()
        retries += budget.try_retry()
    assert 45 <= retries <= 50


class Flaky:
    """A downstream failing its first `fails` calls without an answer, then answering."""

    def __init__(self, fails: int, error: Exception | None = None) -> None:
        self.fails, self.calls, self.error = fails, 0, error
        self.deadlines: list[float | None] = []

    async def charge(self, order: Order, deadline: float | None = None) -> str:
        self.calls += 1
        self.deadlines.append(deadline)
        if self.calls <= self.fails:
            raise self.error or TransportError("http_500", "injected")
        return "charged"

    async def close(self) -> None:
        pass


def _guard(inner: Flaky, **retries: object) -> tuple[Guarded, PolicyEvents]:
    events = PolicyEvents()
    spec = config.Retries(**{"kind": "fixed", "max_attempts": 3, "base_s": 0.001, "cap_s": 0.001,
                             "budget": None, "budget_window_s": 10.0, **retries})  # type: ignore[arg-type]
    return Guarded(inner, config.Policies(timeout_s=1.0, retries=spec), 1.0, events), events


ORDER = Order(id=7, user_id=1, items=(), total_cents=100, status="pending", created_at_ms=0)


def test_guard_retries_failures_without_an_answer_and_propagates_the_deadline() -> None:
    inner = Flaky(fails=2)
    guard, events = _guard(inner)
    assert asyncio.run(guard.charge(ORDER)) == "charged"
    assert inner.calls == 3 and events.counts["retries"] == 2
    assert events.counts["calls"] == 1 and events.counts["attempts"] == 3
    assert all(d is not None for d in inner.deadlines)


def test_guard_does_not_retry_an_answer_nor_past_the_budget() -> None:
    inner = Flaky(fails=5, error=NotFound("no such order"))
    guard, events = _guard(inner)
    with pytest.raises(NotFound):
        asyncio.run(guard.charge(ORDER))
    assert inner.calls == 1 and events.counts["retries"] == 0
    inner = Flaky(fails=5)
    guard, events = _guard(inner, budget=0.0)
    with pytest.raises(TransportError):
        asyncio.run(guard.charge(ORDER))
    assert inner.calls == 1 and events.counts["budget_exhausted"] == 1


def _scenario(tmp_path: Path, policies: str, topology: str = "chain") -> Path:
    path = tmp_path / "p.toml"
    path.write_text(f'name = "p"\ntopology = "{topology}"\nduration = "2s"\n[load]\nrate = 5\n'
                    f"[operations]\ncreate = 1\n{policies}")
    return path


def test_policies_table_is_read_and_passed_on_with_the_same_keys(tmp_path: Path) -> None:
    sc = load_scenario(_scenario(tmp_path, '[policies]\ntimeout = "300ms"\nbulkhead = 40\n'
                                            '[policies.retries]\nkind = "exponential"\nbudget = 0.1\n'
                                            '[policies.breaker]\nopen_for = "2s"\n'))
    assert sc.policies.label == "timeouts+retries+breaker+bulkhead"
    wire = sc.policies.to_wire()
    assert policies_option(wire) == wire  # `commbench serve --policies` takes the same
    read = config.Policies.from_json(wire)
    assert read.timeout_s == 0.3 and read.bulkhead == 40 and read.shed is None
    assert read.retries == config.Retries("exponential", 3, 0.02, 1.0, 0.1, 10.0)
    assert read.breaker is not None and read.breaker.open_s == 2.0
    assert load_scenario(_scenario(tmp_path, "")).policies == Policies()
    assert Policies().to_wire() == ""  # off by default: the edge gets no option at all


def test_bad_policies_are_one_line_each(tmp_path: Path) -> None:
    path = _scenario(tmp_path, '[policies]\ntimeout = "fast"\nshed = 10\nretry = 1\n'
                               '[policies.breaker]\nwindow = 5\nmin_calls = 6\n')
    proc = subprocess.run([COMMBENCH, "run", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith(f"commbench: {path}: policies.timeout: must be a duration")
    assert any(f"{path}: policies.shed: must be an integer from {MIN_SHED}" in ln for ln in lines)
    assert any(ln.endswith("policies.breaker: min_calls must be at most window (5), got 6")
               for ln in lines)
    assert any("policies.retry: unknown key; valid keys here: name, timeout" in ln for ln in lines)
    assert "Traceback" not in proc.stderr
    single = subprocess.run([COMMBENCH, "run", str(_scenario(tmp_path, "[policies]\nshed = 64\n",
                                                             "single"))],
                            capture_output=True, text=True, timeout=60)
    assert single.returncode == 2 and 'policies: apply to the chain' in single.stderr


def test_serve_refuses_bad_policies_in_one_line() -> None:
    proc = subprocess.run([COMMBENCH, "serve", "rest", "--policies", '{"retries": {"kind": 1}}'],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ('commbench: --policies: retries.kind: must be "none", "fixed" '
                                   'or "exponential", got 1')


def test_bounds_let_the_gate_pass() -> None:
    assert MIN_BULKHEAD >= CONCURRENT_CREATES and MIN_SHED > CONCURRENT_CREATES


def test_control_socket_answers_the_policy_query() -> None:
    before = EVENTS.snapshot()["counters"]["retries"]
    EVENTS.add("retries", 2)
    reply = answer(FaultSwitch(), json.dumps({"query": "policies", "events_from": 0}).encode())
    assert reply["ok"] and set(reply["counters"]) == set(COUNTERS)
    assert reply["counters"]["retries"] == before + 2
    bad = answer(FaultSwitch(), b'{"query": "policies", "events_from": -1}')
    assert bad == {"ok": False, "error": "events_from must be an integer of 0 or more, got -1"}
    assert answer(FaultSwitch(), b'{"query": "faults"}')["ok"] is False
