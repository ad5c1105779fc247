"""The article's two failure claims, judged on a run that injected faults into a downstream
service of the chain topology, from the per-fault numbers the run recorded (run.json
`cascade`) and the histograms of the fault windows.

- *Synchronous call chains cascade failures*: for each REST or gRPC target, did the edge show
  the fault (over 1 % errors, or p99 over twice the pre-fault p99, within the fault)?
- *Consumer failures do not affect producers behind a queue*: for the queue, did the producer
  keep being served while the fault lasted: the broker's accept (`create_accepted`) p99 within
  twice its pre-fault value and no accept failed?

As with every claim, a verdict needs CLAIM_MIN_REPS repetitions that all agree; fewer give
an observation. Targets that failed are left out.
"""

from __future__ import annotations

import pandas as pd

from reports.claims import NOT_MEASURED, REFUTED, SUPPORTED, UNDECIDED, Claim, too_few_reps
from reports.loader import Run, percentiles_ms
from reports.stats import CLAIM_MIN_REPS

DOWNSTREAM = ("payment", "inventory", "notification")
DISRUPTIVE = ("kill", "pause", "errors", "delay")


def _fault_rows(run: Run, transports: tuple[str, ...]) -> dict[str, list[dict]]:
    """target → its per-fault cascade rows (one per repetition and fault) for downstream
    faults, from targets that did not fail."""
    failed = run.failed_targets()
    out: dict[str, list[dict]] = {}
    for t in run.context.get("targets", []):
        if t.get("transport") in transports and t.get("name") not in failed:
            rows = [dict(row, repetition=t.get("repetition", 1)) for row in t.get("cascade") or []
                    if row.get("fault", "").split(":")[0] in DOWNSTREAM]
            if rows:
                out.setdefault(t["name"], []).extend(rows)
    return out


def _verdict(c: Claim, outcomes: list[bool], reps: int, what: str) -> Claim:
    if reps < CLAIM_MIN_REPS:
        c.verdict = UNDECIDED
        c.reason = too_few_reps(reps)
        c.observation = (f"observed in this run, not a verdict: {sum(outcomes)} of "
                         f"{len(outcomes)} fault windows {what}")
    elif all(outcomes):
        c.verdict = SUPPORTED
        c.reason = f"every fault window of every repetition {what}"
    elif not any(outcomes):
        c.verdict = REFUTED
        c.reason = f"no fault window of any repetition {what}"
    else:
        c.verdict = UNDECIDED
        c.reason = f"the repetitions disagree: {sum(outcomes)} of {len(outcomes)} {what}"
    return c


def sync_chains_cascade(run: Run, df: pd.DataFrame) -> Claim:
    c = Claim("sync-cascade", "Synchronous call chains cascade failures",
              "HTTP/REST — Cons: … cascading failures (if order-service is down, this call fails)")
    rows = _fault_rows(run, ("rest", "grpc"))
    if not rows:
        c.verdict, c.reason = NOT_MEASURED, _none(run, "a REST or gRPC chain")
        return c
    outcomes = []
    for target, faults in rows.items():
        for f in faults:
            shown = f.get("time_to_detect_s") is not None
            outcomes.append(shown)
            c.evidence.append(
                f"{target} r{f['repetition']}, {f['fault']}: error rate during "
                f"{float(f.get('error_rate_during') or 0):.1%}, p99 during "
                f"{_ms(f.get('p99_during_ms'))} vs {_ms(f.get('baseline_p99_ms'))} before; "
                + (f"the edge showed it after {f['time_to_detect_s']:g} s" if shown
                   else "the edge never showed it"))
    return _verdict(c, outcomes, len(run.repetitions), "showed the fault at the edge")


def queue_isolates_consumers(run: Run, df: pd.DataFrame) -> Claim:
    c = Claim("queue-isolation", "Consumer failures do not affect producers behind a queue",
              "Message queues — Pros: … resilience (consumer failures don't affect producers)")
    rows = _fault_rows(run, ("queue",))
    if not rows:
        c.verdict, c.reason = NOT_MEASURED, _none(run, "the queue's saga")
        return c
    outcomes = []
    for target, faults in rows.items():
        for f in faults:
            rep, start, end = int(f["repetition"]), float(f["start_s"]), float(f["end_s"])
            before = _p99(run, target, rep, (0, int(start)))
            during = _p99(run, target, rep, (int(start), end))
            failed = run.histogram(target, "create_accepted", repetition=rep, outcome="error",
                                   seconds=(int(start), end))
            n_failed = failed.get_total_count() if failed is not None else 0
            kept = during is not None and before is not None and during <= 2 * before \
                and n_failed == 0
            outcomes.append(kept)
            c.evidence.append(
                f"{target} r{rep}, {f['fault']}: the broker's accept p99 {_ms(during)} during "
                f"vs {_ms(before)} before, {n_failed} accepts failed; completed orders p99 "
                f"during {_ms(f.get('p99_during_ms'))}")
    return _verdict(c, outcomes, len(run.repetitions),
                    "kept serving the producer (accept p99 within 2× and no failed accept)")


def _none(run: Run, what: str) -> str:
    if not run.scenario.get("faults"):
        return "no fault was injected in this run"
    return f"no fault hit a downstream service of {what} in this run"


def _p99(run: Run, target: str, rep: int, seconds: tuple[float, float]) -> float | None:
    h = run.histogram(target, "create_accepted", repetition=rep, seconds=seconds)
    if h is None or h.get_total_count() == 0:
        return None
    return percentiles_ms(h, [99])[99]


def _ms(v: object) -> str:
    return "–" if v is None else f"{float(v):.1f} ms"  # type: ignore[arg-type]
