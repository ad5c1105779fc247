"""The article's claims about event sourcing with CQRS, judged on a run that measured a
target with an event log and a projected read model (run.json `consistency`, written for
the eventsourced target):

- *Complete audit trail*: after the load, the read model equals a fresh replay of the log,
  with every event in the log applied exactly once: nothing the service answered for was
  lost from the log, and the log alone rebuilds the state.
- *Temporal queries (state at any point)*: the conformance gate's "temporal query" check
  (an order's state before its creation, at it and after each status change, folded from
  the log) passed before the target was measured.
- *The read model must be eventually consistent* (the article's con): the projection lags
  the log (lag above zero) and catches up (the check above); the lag and, when the scenario
  counted them, the read-your-writes violations say how stale reads ran.

These are correctness checks, not noisy figures: one repetition can decide, and every
repetition must agree. A repetition without the check (an older run, or a check that could
not run) decides nothing.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from reports.claims import NOT_MEASURED, REFUTED, SUPPORTED, UNDECIDED, Claim
from reports.loader import Run

TEMPORAL_CHECK = "temporal query"  # harness/stage/conformance.py's name for it


def _logged(run: Run, claim: Claim) -> list[dict[str, Any]]:
    """Target runs with an event log's figures, failed ones left out; none: the claim says
    what it needs (and `_decide` leaves it not measured)."""
    failed = run.failed_targets()
    rows = [t for t in run.context.get("targets", [])
            if t.get("name") not in failed and (t.get("consistency") or {}).get("check")]
    if not rows:
        claim.reason = "needs an event-sourced target (the eventsourced target) in the run"
    return rows


def _label(t: dict[str, Any]) -> str:
    return f"{t.get('name')} r{t.get('repetition', 1)}"


def audit_trail(run: Run, df: pd.DataFrame) -> Claim:
    claim = Claim("es-audit", "Event sourcing keeps a complete audit trail: the log alone "
                  "rebuilds every order", "Event Sourcing — Pros: Complete audit trail")
    rows = _logged(run, claim)
    good, bad, unknown = 0, 0, 0
    for t in rows:
        c = t["consistency"]["check"]
        if c.get("error") or c.get("consistent") is None:
            unknown += 1
            claim.evidence.append(f"{_label(t)}: the log was not checked ({c.get('error')})")
            continue
        ok = bool(c.get("consistent"))
        good, bad = good + ok, bad + (not ok)
        claim.evidence.append(
            f"{_label(t)}: a fresh replay of {c.get('events_in_log', '?'):,} logged events "
            f"{'equals' if ok else 'differs from'} the read model ({c.get('missing', '?')} "
            f"missing, {c.get('different', '?')} different, {c.get('extra', '?')} extra; "
            f"{c.get('applied', '?'):,} events applied once, "
            f"{c.get('duplicates_dropped', 0):,} repeats dropped)")
    _decide(claim, good, bad, unknown, "the read model equal to a replay of the log")
    return claim


def temporal_queries(run: Run, df: pd.DataFrame) -> Claim:
    claim = Claim("es-temporal", "Event sourcing answers temporal queries: an order's state "
                  "at any point in time", "Event Sourcing — Pros: … temporal queries (state at "
                  "any point)")
    rows = _logged(run, claim)
    good, unknown = 0, 0
    for t in rows:
        passed = t.get("checks_passed")
        if passed is None:
            unknown += 1
            claim.evidence.append(f"{_label(t)}: this run did not record its checks' names")
        elif TEMPORAL_CHECK in passed:
            good += 1
            claim.evidence.append(f"{_label(t)}: the gate's temporal query passed (the state "
                                  "before the creation, at it and after a status change, "
                                  "folded from the log)")
        else:
            unknown += 1
            claim.evidence.append(f"{_label(t)}: no temporal query among its checks")
    # A failed check stops the target before it is measured: it is a failed target, never here.
    _decide(claim, good, 0, unknown, "the gate's temporal-query check passed")
    return claim


def eventually_consistent(run: Run, df: pd.DataFrame) -> Claim:
    claim = Claim("es-eventual", "Event sourcing's read model is eventually consistent: reads "
                  "trail the writes, then catch up", "Event Sourcing — Cons: … read model "
                  "must be eventually consistent")
    rows = _logged(run, claim)
    good, bad, unknown = 0, 0, 0
    for t in rows:
        c = t["consistency"]
        lag, ryw, check = c.get("projection_lag_ms") or {}, c.get("read_your_writes") or {}, c["check"]
        trails = (lag.get("max") or 0) > 0 or (ryw.get("violations") or 0) > 0
        caught_up = check.get("consistent")
        stale = (f"; {ryw['violations']:,} of {ryw['checks']:,} reads right after a create "
                 f"did not see it ({float(ryw.get('rate') or 0):.2%})" if ryw.get("checks")
                 else "; read-your-writes not counted (scenario key read_your_writes)")
        claim.evidence.append(
            f"{_label(t)}: projection lag p50 {_ms(lag.get('p50'))}, p99 {_ms(lag.get('p99'))}, "
            f"max {_ms(lag.get('max'))}; peak backlog {c.get('backlog_max_events', '?')} "
            f"events{stale}; after the load the read model "
            f"{'caught up with the log' if caught_up else 'was not checked equal to the log'}")
        if caught_up is None or not lag:
            unknown += 1
        elif trails and caught_up:
            good += 1
        else:
            bad += 1
    _decide(claim, good, bad, unknown, "reads trailing the log, then caught up")
    return claim


def _ms(v: Any) -> str:
    return "–" if v is None else f"{float(v):.3g} ms"


def _decide(claim: Claim, good: int, bad: int, unknown: int, what: str) -> None:
    """Every checked repetition must agree; one that was not checked decides nothing."""
    checked = good + bad
    if not checked:
        claim.verdict = NOT_MEASURED
        claim.reason = claim.reason or "no repetition could be checked"
    elif bad:
        claim.verdict = REFUTED
        claim.reason = f"{bad} of {checked} checked target runs did not show {what}"
    elif unknown:
        claim.verdict = UNDECIDED
        claim.reason = (f"{good} checked target runs showed {what}, {unknown} could not be "
                        "checked")
    else:
        claim.verdict = SUPPORTED
        claim.reason = (f"every checked target run ({good}) showed {what}: a correctness "
                        "check, so one repetition decides")
