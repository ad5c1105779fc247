"""What resilience policies buy, judged on a run that measured policy variants side by side
(`[[variants]]`) under faults on a downstream of the chain, per transport and repetition:

- *A timeout turns a frozen downstream into fast errors*: under a pause or delay fault, the
  edge's p99 over every create (answered or failed) is lower with a variant that sets a
  timeout than with one that does not (the chain's default hop timeout, 2 s, still applies).
- *A circuit breaker lets the edge recover sooner*: the goodput comes back sooner after the
  fault with a variant that has a breaker than with the same variant without it.
- *Retries without a budget amplify load*: a variant with retries and no budget sends more
  than AMPLIFIES downstream attempts per call under the fault; with a budget, fewer.

Each pair is compared within one transport and repetition, so the comparison is fair; a
verdict needs CLAIM_MIN_REPS repetitions in which every pair agrees, as every claim does.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from reports.cascade_claims import _verdict
from reports.claims import NOT_MEASURED, Claim
from reports.loader import Run, merge, percentiles_ms

AMPLIFIES = 1.2  # attempts per call above which retries count as amplifying the load
SOONER_S = 1.0  # a breaker's recovery must be at least this much sooner to count
FROZEN = ("pause", "delay")
_ON = (("timeouts", "timeout_s"), ("retries", "retries"), ("breaker", "breaker"),
       ("bulkhead", "bulkhead"), ("shed", "shed"))


def _variants(run: Run) -> dict[str, dict[str, Any]]:
    """label → the variant's policies, as run.json's scenario holds them."""
    out = {}
    for v in run.scenario.get("variants") or []:
        on = [name for name, key in _ON if v.get(key) is not None]
        out[v.get("name") or "+".join(on) or "none"] = v
    return out


def _rows(run: Run, part: str | None = None) -> list[dict[str, Any]]:
    """Target runs of variants that hold a cascade row, failed ones left out, and those
    whose transport does not apply `part` (run.json `policies.not_applied`)."""
    failed = run.failed_targets()
    return [t for t in run.context.get("targets", [])
            if t.get("name") not in failed and "~" in str(t.get("name")) and t.get("cascade")
            and part not in ((t.get("policies") or {}).get("not_applied") or ())]


def _pairs(run: Run, part: str, first: Any, second: Any) -> list[tuple[dict, dict]]:
    """(a, b) target runs of one transport and repetition that applies `part`, whose
    variants satisfy first(policies) and second(policies, a's policies)."""
    variants, rows = _variants(run), _rows(run, part)
    by = {}
    for t in rows:
        by.setdefault((t["transport"], t.get("repetition", 1)), []).append(t)
    out = []
    for group in by.values():
        for a in group:
            for b in group:
                va = variants.get(a["name"].split("~", 1)[1])
                vb = variants.get(b["name"].split("~", 1)[1])
                if a is not b and va is not None and vb is not None and first(va) and second(vb, va):
                    out.append((a, b))
    return out


def _needs(run: Run, what: str) -> str:
    if not run.scenario.get("variants"):
        return "the run measured no policy variants ([[variants]])"
    return f"the run has no pair of variants {what}"


def timeout_fast_errors(run: Run, df: pd.DataFrame) -> Claim:
    c = Claim("timeout-fast-errors", "A timeout turns a frozen downstream into fast errors",
              "HTTP/REST — Cons: … cascading failures (a slow service holds its callers)")
    frozen = [f for f in run.scenario.get("faults") or [] if f.get("kind") in FROZEN]
    pairs = _pairs(run, "timeouts", lambda v: v.get("timeout_s") is not None,
                   lambda v, w: v.get("timeout_s") is None and _same_but(v, w, "timeout_s"))
    if not frozen or not pairs:
        c.verdict = NOT_MEASURED
        c.reason = ("no pause or delay fault in this run" if not frozen else
                    _needs(run, "with and without a timeout on one transport"))
        return c
    outcomes = []
    for a, b in pairs:
        window = (float(a["cascade"][0]["start_s"]), float(a["cascade"][0]["end_s"]))
        pa, pb = _all_p99(run, a, window), _all_p99(run, b, window)
        faster = pa is not None and pb is not None and pa < pb
        outcomes.append(faster)
        c.evidence.append(f"{a['name']} vs {b['name']} r{a.get('repetition', 1)}: every "
                          f"create's p99 during the fault {_ms(pa)} vs {_ms(pb)}")
    return _verdict(c, outcomes, len(run.repetitions), "answered faster with the timeout")


def breaker_recovers_sooner(run: Run, df: pd.DataFrame) -> Claim:
    c = Claim("breaker-recovers", "A circuit breaker lets the edge recover sooner",
              "(implied) resilience patterns around synchronous calls")
    pairs = _pairs(run, "breaker", lambda v: v.get("breaker") is not None,
                   lambda v, w: v.get("breaker") is None and _same_but_breaker(v, w))
    if not pairs:
        c.verdict, c.reason = NOT_MEASURED, _needs(run, "that differ only by a breaker")
        return c
    outcomes = []
    for a, b in pairs:
        ra, rb = _back(a), _back(b)
        sooner = ra is not None and (rb is None or ra + SOONER_S <= rb)
        outcomes.append(sooner)
        c.evidence.append(f"{a['name']} vs {b['name']} r{a.get('repetition', 1)}: goodput back "
                          f"{_s(ra)} vs {_s(rb)} after the fault")
    return _verdict(c, outcomes, len(run.repetitions),
                    f"recovered at least {SOONER_S:g} s sooner with the breaker")


def unbudgeted_retries_amplify(run: Run, df: pd.DataFrame) -> Claim:
    c = Claim("retries-amplify", "Retries without a budget amplify load",
              "(implied) retries are the usual amplifier of a short trigger (metastable failures)")
    rows = [t for t in _rows(run, "retries") if _variants(run).get(t["name"].split("~", 1)[1], {})
            .get("retries") and _variants(run)[t["name"].split("~", 1)[1]]["retries"]
            .get("budget") is None]
    if not rows:
        c.verdict, c.reason = NOT_MEASURED, _needs(run, "with retries and no budget")
        return c
    outcomes = []
    for t in rows:
        amp = (t.get("policies") or {}).get("amplification")
        outcomes.append(amp is not None and amp > AMPLIFIES)
        budgeted = [u for u in _rows(run, "retries") if u["transport"] == t["transport"]
                    and u.get("repetition") == t.get("repetition") and (_variants(run).get(
                        u["name"].split("~", 1)[1], {}).get("retries") or {}).get("budget")
                    is not None]
        others = "; ".join(f"{u['name']}: {(u.get('policies') or {}).get('amplification')}"
                           for u in budgeted)
        c.evidence.append(f"{t['name']} r{t.get('repetition', 1)}: {amp} attempts per call"
                          + (f" (with a budget, {others})" if others else ""))
    return _verdict(c, outcomes, len(run.repetitions),
                    f"sent over {AMPLIFIES:g} attempts per call")


def _same_but(v: dict[str, Any], w: dict[str, Any], key: str) -> bool:
    """v and w set every policy alike but `key` (and the name)."""
    return all(v.get(k) == w.get(k) for k in set(v) | set(w) if k not in (key, "name"))


def _same_but_breaker(v: dict[str, Any], w: dict[str, Any]) -> bool:
    """v is w without its breaker (the retries' budget may differ: a budget often comes
    with a breaker), so the pair isolates what the breaker adds."""
    return v.get("timeout_s") == w.get("timeout_s") and bool(v.get("retries")) == bool(
        w.get("retries"))


def _back(t: dict[str, Any]) -> float | None:
    return t["cascade"][0].get("goodput_back_s")


def _all_p99(run: Run, t: dict[str, Any], window: tuple[float, float]) -> float | None:
    """p99 of every create in the window, answered or failed: a fast error counts fast."""
    rep = int(t.get("repetition", 1))
    hs = [run.histogram(t["name"], "create", repetition=rep, outcome=o, seconds=(int(window[0]),
                        window[1])) for o in ("ok", "error")]
    merged = merge(h for h in hs if h is not None)
    if merged is None or not merged.get_total_count():
        return None
    return percentiles_ms(merged, [99])[99]


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.0f} ms"


def _s(v: float | None) -> str:
    return "stayed down" if v is None else f"{v:g} s"
