"""The event-sourcing claims' logic on hand-made run.json rows (pure logic): each verdict,
and what a run without an event log, or without the checks, decides."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from reports import es_claims


@dataclass
class FakeRun:
    """The two things the claims read of a Run: run.json's targets and the failed ones."""

    targets: list[dict[str, Any]]
    failed: set[str] = field(default_factory=set)

    @property
    def context(self) -> dict[str, Any]:
        return {"targets": self.targets}

    def failed_targets(self) -> set[str]:
        return self.failed


def es(rep: int = 1, *, consistent: bool | None = True, lag_max: float = 3.0,
       violations: int = 2, checks: tuple[str, ...] = ("temporal query",)) -> dict[str, Any]:
    check = {"consistent": consistent, "events_in_log": 120, "applied": 120, "missing": 0,
             "different": 0 if consistent else 1, "extra": 0, "duplicates_dropped": 0}
    return {"name": "eventsourced", "repetition": rep, "checks_passed": list(checks),
            "consistency": {"check": check, "backlog_max_events": 4,
                            "projection_lag_ms": {"p50": 0.2, "p99": 1.0, "max": lag_max},
                            "read_your_writes": {"checks": 50, "violations": violations,
                                                 "rate": violations / 50}}}


def verdicts(run: FakeRun) -> dict[str, str]:
    df = pd.DataFrame()
    return {c.key: c.verdict for c in (es_claims.audit_trail(run, df),
                                       es_claims.temporal_queries(run, df),
                                       es_claims.eventually_consistent(run, df))}


def test_every_repetition_checked_supports_all_three() -> None:
    assert set(verdicts(FakeRun([es(1), es(2)])).values()) == {"supported"}


def test_a_read_model_that_differs_from_its_log_refutes_the_audit_trail() -> None:
    v = verdicts(FakeRun([es(1), es(2, consistent=False)]))
    assert v["es-audit"] == v["es-eventual"] == "refuted" and v["es-temporal"] == "supported"


def test_reads_that_never_trail_refute_eventual_consistency() -> None:
    v = verdicts(FakeRun([es(lag_max=0.0, violations=0)]))
    assert v["es-eventual"] == "refuted" and v["es-audit"] == "supported"


def test_unchecked_repetitions_decide_nothing() -> None:
    assert verdicts(FakeRun([es(1), es(2, consistent=None)]))["es-audit"] == "not decided"
    assert verdicts(FakeRun([es(checks=())]))["es-temporal"] == "not measured here"
    old = es()
    del old["checks_passed"]  # a run from before the names were recorded
    assert verdicts(FakeRun([old]))["es-temporal"] == "not measured here"


def test_no_event_log_or_a_failed_target_is_not_measured() -> None:
    rest = {"name": "rest", "repetition": 1, "consistency": {"read_your_writes": {"checks": 9}}}
    assert set(verdicts(FakeRun([rest])).values()) == {"not measured here"}
    assert "needs an event-sourced target" in es_claims.audit_trail(FakeRun([rest]),
                                                                     pd.DataFrame()).reason
    assert set(verdicts(FakeRun([es()], failed={"eventsourced"})).values()) == {"not measured here"}
