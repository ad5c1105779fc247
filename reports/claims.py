"""The seed article's claims, checked against a run.

Each claim gets a verdict: supported, refuted, not decided, or not measured here (the run
lacks what would decide it: a target, an operation, a load spike, an injected fault). The
numbers behind every verdict are listed; nothing is judged on data that cannot decide it:

- A verdict needs measured noise: every figure it rests on comes from at least three
  repetitions (CLAIM_MIN_REPS) whose min–max ranges separate and whose gap exceeds 10 %
  (CLAIM_MIN_EFFECT). The ranges of two repetitions separate by chance about one time in
  three per figure, so one or two repetitions give at most an *observation*, stated beside
  "not decided", never supported/refuted.
- A claim resting on several figures is supported (refuted) only when every decided figure
  points its way and none points the other; the reason says on how many figures.
- A difference within the noise never decides anything.
- Targets that failed, or on which the generator was flagged (fell behind, or lagged by a
  fifth of the latency p99), are left out as the findings leave them out (reports.findings.
  compared_targets, generator_behind): their latency holds the generator's or a broken target's.
- Gaps are measured against the larger value, the same reference the decision uses.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from reports.findings import (
    generator_behind,
    label,
    op_noun,
    throughput_comparable,
)
from reports.loader import Run, percentiles_ms
from reports.pairs import pick, production_targets
from reports.stats import (
    CLAIM_MIN_EFFECT,
    CLAIM_MIN_REPS,
    DEFAULT_NOISE,
    Figure,
    differs,
    enough_tail,
    rel_gap,
    tail_need,
)
from reports.tables import figure, fmt

SUPPORTED, REFUTED, UNDECIDED, NOT_MEASURED = (
    "supported", "refuted", "not decided", "not measured here")
ONE_REP = ("one repetition: the run-to-run noise is not measured, so the run gives no "
           "verdict (repeat it, e.g. --repetitions 3, to decide)")
TWO_REPS = ("two repetitions: their min–max ranges separate by chance about one time in "
            f"three per figure, so the run gives no verdict (a verdict needs at least "
            f"{CLAIM_MIN_REPS} repetitions, e.g. --repetitions {CLAIM_MIN_REPS})")


def too_few_reps(reps: int) -> str:
    """Why a run with fewer than CLAIM_MIN_REPS repetitions gives no verdict."""
    return ONE_REP if reps < 2 else TWO_REPS


def _band(reps: int) -> str:
    """What an unmeasured (or under-measured) difference was judged against."""
    return (f"the ±{DEFAULT_NOISE * 100:.0f} % default band" if reps < 2 else
            "the two repetitions' ranges")


# (key, claim, the article's words) of claims a sweep judges too (reports.sweep_claims)
GRPC_FAST = ("grpc-fast", "gRPC is faster than REST (binary protocol)",
             "gRPC — Pros: Fast (binary protocol) … Use when: High throughput is required")
REST_BLOCKING = ("rest-blocking",
                 "REST's blocking call costs its caller time: a queue producer is released "
                 "sooner, once the broker accepts the message",
                 "HTTP/REST — Pros: Simple … Cons: … latency (blocking)")
STACKS_CAVEAT = ("; the runs compare whole stacks (framework, client, encoding), so they do "
                 "not show that the binary protocol is the cause")


@dataclass
class Claim:
    key: str
    claim: str
    source: str  # the article's words
    verdict: str = NOT_MEASURED
    evidence: list[str] = field(default_factory=list)
    reason: str = ""
    observation: str = ""  # what one repetition showed, without a verdict


@dataclass(frozen=True)
class Vote:
    """One figure compared: direction (-1 a lower, +1 a higher, 0 within noise) and how many
    repetitions measured its noise (`measured`: enough for a verdict, CLAIM_MIN_REPS)."""

    direction: int
    reps: int
    line: str

    @property
    def measured(self) -> bool:
        return self.reps >= CLAIM_MIN_REPS

    @property
    def decided(self) -> bool:
        return self.measured and self.direction != 0


def check_claims(run: Run, df: pd.DataFrame) -> list[Claim]:
    """Every claim of the article, judged on one run."""
    return [check(run, df) for check in CHECKS]


def _value(name: str, f: Figure, metric: str, unit: str) -> str:
    spread = (f" [{fmt(f.lo, metric, False)}–{fmt(f.hi, metric, False)}]"
              if f.reps >= 2 else "")
    return f"{name} {fmt(f.value, metric)}{spread} {unit}"


def _vote(name_a: str, name_b: str, what: str, metric: str, fa: Figure, fb: Figure,
          unit: str, short: tuple[str, str] | None = None) -> Vote:
    """Compare a with b; the line gives both values and the gap against the larger one
    (named by `short`, default the names)."""
    d = differs(fa, fb, min_effect=CLAIM_MIN_EFFECT)
    reps = min(fa.reps, fb.reps)
    gap = abs(rel_gap(fa.value, fb.value)) * 100
    if math.isnan(gap) or fa.value == fb.value:
        gap_text = "equal"
    else:
        sa, sb = short or (name_a, name_b)
        gap_text = f"{sa if fa.value < fb.value else sb} {gap:.0f} % lower"
    if reps >= CLAIM_MIN_REPS:
        mark = (f"beyond the measured noise (repetition ranges apart, gap over "
                f"{CLAIM_MIN_EFFECT * 100:.0f} %)" if d else
                f"within the measured noise (ranges overlap or the gap is under "
                f"{CLAIM_MIN_EFFECT * 100:.0f} %)")
    elif reps == 2:
        mark = ("ranges of two repetitions apart, too few repetitions for a verdict" if d else
                f"within the two repetitions' ranges (or the gap is under "
                f"{CLAIM_MIN_EFFECT * 100:.0f} %)")
    else:
        mark = (f"beyond the ±{DEFAULT_NOISE * 100:.0f} % default band, noise not measured"
                if d else f"within the ±{DEFAULT_NOISE * 100:.0f} % default band")
    return Vote(d, reps, f"{what}, {metric}: {_value(name_a, fa, metric, unit)} vs "
                             f"{_value(name_b, fb, metric, unit)} ({gap_text}), {mark}")


def _observed(votes: list[Vote], lower_a: str, lower_b: str) -> str:
    """Too few repetitions: what the figures showed, stated as an observation only."""
    a = sum(v.direction < 0 for v in votes)
    b = sum(v.direction > 0 for v in votes)
    band = _band(min(v.reps for v in votes))
    if not a and not b:
        return f"observed in this run: every compared figure within {band}"
    return (f"observed in this run, not a verdict: {lower_a} on {a} and {lower_b} on {b} of "
            f"{len(votes)} figures beyond {band}")


def grpc_fast(run: Run, df: pd.DataFrame) -> Claim:
    c = Claim(*GRPC_FAST)
    targets = production_targets(run, df)
    g = pick(targets, "grpc")
    r = pick(targets, "rest", like=g)
    if not (g and r):
        c.reason = "needs both a REST and a gRPC target that completed"
        return c
    ops = [op for op in ("get", "list", "create")
           if figure(df, g, op, "p50").known and figure(df, r, op, "p50").known]
    if not ops:
        c.reason = "REST and gRPC share no measured operation"
        return c
    comparable, why = throughput_comparable(run, [g, r])
    behind = generator_behind(run, [g, r])
    votes: list[Vote] = []
    for op in ops:
        for m in ["p50", "p99"] + (["throughput"] if comparable else []):
            fg, fr = figure(df, g, op, m), figure(df, r, op, m)
            if m == "p99" and not (enough_tail(m, fg) and enough_tail(m, fr)):
                c.evidence.append(f"{op_noun(op)}, p99: too few requests to judge the tail "
                                  f"(needs {tail_need(m):,} per target)")
                continue
            unit = "req/s" if m == "throughput" else "ms"
            v = _vote(label(g), label(r), op_noun(op), m, fg, fr, unit)
            if m != "throughput" and behind:
                c.evidence.append(f"{v.line}; not counted: {behind}")
                continue
            # -1: gRPC better (lower latency, higher throughput)
            direction = -v.direction if m == "throughput" else v.direction
            votes.append(Vote(direction, v.reps, v.line))
            c.evidence.append(v.line)
    cpu_g, cpu_r = figure(df, g, "all", "cpu"), figure(df, r, "all", "cpu")
    if cpu_g.known and cpu_r.known:
        c.evidence.append(f"CPU per request (all operations): {label(g)} "
                          f"{cpu_g.value:,.0f} µs vs {label(r)} {cpu_r.value:,.0f} µs")
    if not comparable:
        c.evidence.append(f"throughput not compared: {why}")
    if not votes:
        c.verdict = UNDECIDED
        c.reason = f"{behind}, so its latency cannot decide the claim" if behind else \
            "no figure could be compared"
    else:
        decide(c, votes, ("gRPC", "REST"), ("gRPC lower", "REST lower"))
        if behind and all(v.measured for v in votes):
            c.reason += f"; latency not counted: {behind}"
    c.reason += STACKS_CAVEAT
    return c


def decide(c: Claim, votes: list[Vote], names: tuple[str, str],
           observed: tuple[str, str]) -> None:
    """Set the verdict of "names[0] is faster than names[1]" from its votes (-1: names[0]'s
    way), one rule for the run's claim and the sweep's: too few repetitions give an
    observation; else supported (refuted) when every decided figure points that way."""
    if not all(v.measured for v in votes):
        c.verdict = UNDECIDED
        c.reason = too_few_reps(min(v.reps for v in votes))
        c.observation = _observed(votes, *observed)
        return
    (a, b), decided = names, [v.direction for v in votes if v.decided]
    a_n, b_n = decided.count(-1), decided.count(1)
    tally = (f" ({len(decided)} of {len(votes)} figures decided, "
             f"{len(votes) - len(decided)} within the noise)")
    if not decided:
        c.verdict, c.reason = UNDECIDED, "every difference is within the measured noise"
    elif bool(a_n) != bool(b_n):  # every decided figure one way
        c.verdict = SUPPORTED if a_n else REFUTED
        c.reason = (f"{a if a_n else b} was faster on every figure that differed beyond the "
                    "measured noise, and no figure pointed the other way" + tally)
    else:
        c.verdict = UNDECIDED
        c.reason = (f"the decided figures point both ways: {a} faster on {a_n}, {b} "
                    f"faster on {b_n}" + tally)


def rest_blocking(run: Run, df: pd.DataFrame) -> Claim:
    c = Claim(*REST_BLOCKING)
    targets = production_targets(run, df)
    r = pick(targets, "rest")
    q = pick(targets, "queue", like=r)
    if not (r and q):
        c.reason = "needs a REST and a queue target that completed; 'simple' is not measurable"
        return c
    fr, fa = figure(df, r, "create", "p50"), figure(df, q, "create_accepted", "p50")
    fc = figure(df, q, "create", "p50")
    if not (fr.known and fa.known):
        c.reason = ("needs order creations on both (the queue's accepted and completed "
                    "moments); this run has none")
        return c
    v = _vote(f"{label(r)} completed", f"{label(q)} accepted", op_noun("create"), "p50",
              fr, fa, "ms", (label(r), label(q)))
    c.evidence.append(v.line)
    if fc.known:
        c.evidence.append(f"{label(q)} completed its creations at p50 {fmt(fc.value, 'p50')} ms")
    c.reason = "; 'simple' is not something a benchmark measures"
    if behind := generator_behind(run, [r, q]):
        c.verdict = UNDECIDED
        c.evidence[0] += f"; not counted: {behind}"
        c.reason = f"{behind}, so the waits cannot decide the claim" + c.reason
        return c
    if not v.measured:
        c.verdict, c.reason = UNDECIDED, too_few_reps(v.reps) + c.reason
        c.observation = ("observed in this run, not a verdict: " + (
            "the REST caller waited longer" if v.direction > 0 else
            "the REST caller got its answer sooner" if v.direction < 0 else
            f"the waits within {_band(v.reps)}"))
        return c
    if v.direction > 0:
        c.verdict = SUPPORTED
        c.reason = ("a REST caller waited longer than a queue producer, which the broker "
                    "released before the order was processed") + c.reason
    elif v.direction < 0:
        c.verdict = REFUTED
        c.reason = ("the REST caller got its completed answer sooner than the queue's "
                    "accept") + c.reason
    else:
        c.verdict = UNDECIDED
        c.reason = "the waits differ by less than the measured noise" + c.reason
    return c


def queue_buffers_spikes(run: Run, df: pd.DataFrame) -> Claim:
    """Supported only when, with measured noise, the producers' wait for the broker's
    accept did not grow from the lowest to the highest stage while the completed creations
    did (so the spike really outran the consumer and the queue absorbed it). An accept wait
    within noise with nothing buffered shows nothing: not decided."""
    c = Claim("queue-spikes", "Queues buffer load spikes: producers do not feel them",
              "Message queues — Pros: … buffering (queues handle load spikes)")
    targets = production_targets(run, df)
    q = pick(targets, "queue")
    stages = run.stages
    if not q:
        c.reason = "needs a queue target that completed"
        return c
    if len(stages) < 2 or max(s[2] for s in stages) < 1.5 * min(s[2] for s in stages):
        c.reason = "no load spike in this run (one offered rate); a staged scenario decides it"
        return c
    op = "create_accepted"
    if run.histogram(q, op) is None:
        c.reason = ("the spike carried no queue creations; lookups over the queue are "
                    "request–reply and are not buffered")
        return c
    base = min(stages, key=lambda s: s[2])
    peak = max(stages, key=lambda s: s[2])
    pct = _tail_percentile(run, q, op, [base, peak])
    if pct is None:
        n = [_window(run, q, op, w, 50.0).samples for w in (base, peak)]
        c.verdict = UNDECIDED
        c.reason = (f"too few accepted creations to judge a tail: {n[0]:,.0f} at "
                    f"{base[2]:,.0f}/s and {n[1]:,.0f} at {peak[2]:,.0f}/s; p90 needs "
                    f"{tail_need('p90'):,} in each stage (p99 {tail_need('p99'):,})")
        return c
    m = "p99" if pct == 99.0 else "p90"
    fb, fp = _window(run, q, op, base, pct), _window(run, q, op, peak, pct)
    accept = _vote(f"{label(q)} accept at {peak[2]:,.0f}/s", f"at {base[2]:,.0f}/s",
                   op_noun(op), m, fp, fb, "ms", ("the spike", "the base stage"))
    c.evidence.append(accept.line)
    cb, cp = _window(run, q, "create", base, pct), _window(run, q, "create", peak, pct)
    done = (_vote(f"{label(q)} completed at {peak[2]:,.0f}/s", f"at {base[2]:,.0f}/s",
                  op_noun("create"), m, cp, cb, "ms", ("the spike", "the base stage"))
            if cb.known and cp.known else None)
    if done:
        c.evidence.append(done.line)
    for t in targets:
        if t != q:
            tb, tp = _window(run, t, "create", base, pct), _window(run, t, "create", peak, pct)
            if tb.known and tp.known:
                c.evidence.append(f"{label(t)} creation {m}: {fmt(tb.value, m)} ms at "
                                  f"{base[2]:,.0f}/s, {fmt(tp.value, m)} ms at {peak[2]:,.0f}/s")
    if pct != 99.0:
        c.evidence.append(f"judged at p90: too few creations per stage for p99 "
                          f"(needs {tail_need('p99'):,})")
    if behind := generator_behind(run, [q]):
        c.verdict, c.reason = UNDECIDED, f"{behind}, so its waits cannot decide the claim"
        return c
    if not (accept.measured and (done is None or done.measured)):
        reps = min(accept.reps, done.reps if done else accept.reps)
        c.verdict, c.reason = UNDECIDED, too_few_reps(reps)
        c.observation = ("observed in this run, not a verdict: the accept wait " + (
            "grew during the spike" if accept.direction > 0 else
            f"stayed within {_band(reps)}"
            if accept.direction == 0 else "fell during the spike"))
        return c
    if accept.direction > 0:
        c.verdict = REFUTED
        c.reason = "producers waited longer for the broker's accept during the spike"
    elif done is not None and done.decided and done.direction > 0:
        c.verdict = SUPPORTED
        c.reason = ("the producers' wait for the accept did not grow beyond the measured "
                    "noise while the completed creations did: the queue absorbed the spike")
    else:
        c.verdict = UNDECIDED
        c.reason = ("the accept wait stayed within the measured noise, but so did the "
                    "completed creations: the spike stayed within what the consumer handles, "
                    "so nothing had to be buffered and the run cannot show buffering; a "
                    "spike above the consumer's capacity decides it")
    return c


def _tail_percentile(run: Run, target: str, op: str,
                     windows: list[tuple[float, float, float]]) -> float | None:
    """p99 when every window holds enough requests to judge it, else p90, else None."""
    for pct, key in ((99.0, "p99"), (90.0, "p90")):
        if all(enough_tail(key, _window(run, target, op, w, pct)) for w in windows):
            return pct
    return None


def _window(run: Run, target: str, op: str, window: tuple[float, float, float],
            pct: float) -> Figure:
    """A percentile of one stage: pooled over repetitions, spread across them."""
    seconds = (window[0], window[1])
    h = run.histogram(target, op, seconds=seconds)
    n = float(h.get_total_count()) if h else 0.0
    v = percentiles_ms(h, [pct])[pct]
    per_rep = [percentiles_ms(run.histogram(target, op, repetition=r, seconds=seconds),
                              [pct])[pct] for r in run.repetitions]
    per_rep = [x for x in per_rep if not math.isnan(x)]
    if not per_rep:
        return Figure(v, v, v, 0 if math.isnan(v) else 1, n)
    return Figure(v, min(per_rep), max(per_rep), len(per_rep), n)


def _elsewhere(module: str, name: str) -> Callable[[Run, pd.DataFrame], Claim]:
    """A claim checked in a module of its own, which imports Claim from here (so, late)."""
    def check(run: Run, df: pd.DataFrame) -> Claim:
        return getattr(importlib.import_module(f"reports.{module}"), name)(run, df)
    return check


CHECKS: tuple[Callable[[Run, pd.DataFrame], Claim], ...] = (
    grpc_fast, rest_blocking, queue_buffers_spikes,
    _elsewhere("cascade_claims", "queue_isolates_consumers"),
    _elsewhere("cascade_claims", "sync_chains_cascade"),
    _elsewhere("policy_claims", "timeout_fast_errors"),
    _elsewhere("policy_claims", "breaker_recovers_sooner"),
    _elsewhere("policy_claims", "unbudgeted_retries_amplify"),
    *(_elsewhere("es_claims", n) for n in ("audit_trail", "temporal_queries", "eventually_consistent")))

__all__ = ["DEFAULT_NOISE", "Claim", "check_claims"]
