"""The seed article's claims, checked against a run.

Each claim gets a verdict: supported, refuted, not decided (the run measured it but the
difference is within noise or the evidence points both ways), or not measured here (the run
lacks what would decide it: a target, an operation, a load spike, an injected fault). The
numbers behind every verdict are listed; nothing is judged on data that cannot decide it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from reports.findings import label, op_noun, saturated_targets, throughput_comparable
from reports.loader import Run, percentiles_ms
from reports.stats import DEFAULT_NOISE, Figure, differs, enough_tail, noise_rule
from reports.tables import figure, fmt

SUPPORTED, REFUTED, UNDECIDED, NOT_MEASURED = (
    "supported", "refuted", "not decided", "not measured here")


@dataclass
class Claim:
    key: str
    claim: str
    source: str  # the article's words
    verdict: str = NOT_MEASURED
    evidence: list[str] = field(default_factory=list)
    reason: str = ""


def check_claims(run: Run, df: pd.DataFrame) -> list[Claim]:
    """Every claim of the article, judged on one run."""
    return [check(run, df) for check in CHECKS]


def _ok_targets(run: Run, df: pd.DataFrame) -> list[str]:
    failed = {k.split(" (")[0] for k in run.failed_targets()}
    return [t for t in run.targets if t not in failed and (df["target"] == t).any()]


def _pick(targets: list[str], transport: str) -> str | None:
    """The transport's default-client target, else its first variant."""
    if transport in targets:
        return transport
    return next((t for t in targets if t.split("-")[0] == transport), None)


def _vote(name_a: str, name_b: str, op: str, metric: str, fa: Figure, fb: Figure,
          unit: str) -> tuple[int, str]:
    d = differs(fa, fb)
    change = (fa.value - fb.value) / fb.value * 100 if fb.value else float("nan")
    mark = "decided" if d else f"within noise (deciding needs {noise_rule(fa, fb)})"
    return d, (f"{op_noun(op)}, {metric}: {name_a} {fmt(fa.value, metric)} {unit} vs "
               f"{name_b} {fmt(fb.value, metric)} {unit} ({change:+.0f} %), {mark}")


def grpc_fast(run: Run, df: pd.DataFrame) -> Claim:
    c = Claim("grpc-fast", "gRPC is faster than REST (binary protocol)",
              "gRPC — Pros: Fast (binary protocol) … Use when: High throughput is required")
    targets = _ok_targets(run, df)
    g, r = _pick(targets, "grpc"), _pick(targets, "rest")
    if not (g and r):
        c.reason = "needs both a REST and a gRPC target that completed"
        return c
    ops = [op for op in ("get", "list", "create")
           if not pd.isna(figure(df, g, op, "p50").value)
           and not pd.isna(figure(df, r, op, "p50").value)]
    if not ops:
        c.reason = "REST and gRPC share no measured operation"
        return c
    comparable, why = throughput_comparable(run, [g, r])
    sat = set(saturated_targets(run))
    votes: list[int] = []
    for op in ops:
        metrics = ["p50", "p99"] + (["throughput"] if comparable else [])
        for m in metrics:
            fg, fr = figure(df, g, op, m), figure(df, r, op, m)
            if m == "p99" and not (enough_tail(m, fg) and enough_tail(m, fr)):
                c.evidence.append(f"{op_noun(op)}, p99: too few requests to judge the tail")
                continue
            unit = "req/s" if m == "throughput" else "ms"
            d, line = _vote(label(g), label(r), op, m, fg, fr, unit)
            slower = g if d > 0 else r if d < 0 else None
            if m != "throughput" and slower in sat:
                d, line = 0, (f"{line}; not counted: the generator fell behind on "
                              f"{label(slower)}, which inflates its latency")
            votes.append(-d if m == "throughput" else d)  # -1: gRPC better
            c.evidence.append(line)
    cpu_g, cpu_r = figure(df, g, "all", "cpu"), figure(df, r, "all", "cpu")
    if cpu_g.known and cpu_r.known:
        c.evidence.append(f"CPU per request (all operations): {label(g)} "
                          f"{cpu_g.value:,.0f} µs vs {label(r)} {cpu_r.value:,.0f} µs")
    if not comparable:
        c.evidence.append(f"throughput not compared: {why}")
    decided = [v for v in votes if v]
    if not decided:
        c.verdict, c.reason = UNDECIDED, "every difference is within run-to-run noise"
    elif all(v < 0 for v in decided):
        c.verdict = SUPPORTED
        c.reason = "gRPC was faster on every decided figure"
    elif all(v > 0 for v in decided):
        c.verdict = REFUTED
        c.reason = "REST was faster on every decided figure"
    else:
        c.verdict, c.reason = UNDECIDED, "the decided figures point both ways"
    c.reason += ("; the runs compare whole stacks (framework, client, encoding), so they do "
                 "not show that the binary protocol is the cause")
    return c


def rest_blocking(run: Run, df: pd.DataFrame) -> Claim:
    c = Claim("rest-blocking",
              "REST's blocking call costs its caller time: a queue producer is released "
              "sooner, once the broker accepts the message",
              "HTTP/REST — Pros: Simple … Cons: … latency (blocking)")
    targets = _ok_targets(run, df)
    r, q = _pick(targets, "rest"), _pick(targets, "queue")
    if not (r and q):
        c.reason = "needs a REST and a queue target; 'simple' is not measurable"
        return c
    fr, fa = figure(df, r, "create", "p50"), figure(df, q, "create_accepted", "p50")
    fc = figure(df, q, "create", "p50")
    if not (fr.known and fa.known):
        c.reason = ("needs order creations on both (the queue's accepted and completed "
                    "moments); this run has none")
        return c
    d, line = _vote(f"{label(r)} completed", f"{label(q)} accepted", "create", "p50", fr, fa,
                    "ms")
    c.evidence.append(line)
    if fc.known:
        c.evidence.append(f"{label(q)} completed its creations at p50 {fmt(fc.value, 'p50')} ms")
    if d > 0:
        c.verdict = SUPPORTED
        c.reason = ("a REST caller waited longer than a queue producer, which the broker "
                    "released before the order was processed")
    elif d < 0:
        c.verdict = REFUTED
        c.reason = "the REST caller got its completed answer sooner than the queue's accept"
    else:
        c.verdict, c.reason = UNDECIDED, "the waits differ by less than run-to-run noise"
    c.reason += "; 'simple' is not something a benchmark measures"
    return c


def queue_buffers_spikes(run: Run, df: pd.DataFrame) -> Claim:
    c = Claim("queue-spikes", "Queues buffer load spikes: producers do not feel them",
              "Message queues — Pros: … buffering (queues handle load spikes)")
    targets = _ok_targets(run, df)
    q = _pick(targets, "queue")
    stages = run.stages
    if not q:
        c.reason = "needs a queue target"
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
    fb, fp = _window_p99(run, q, op, base), _window_p99(run, q, op, peak)
    if not (enough_tail("p99", fb) and enough_tail("p99", fp)):
        c.verdict, c.reason = UNDECIDED, "too few creations in the stages to judge their p99"
        return c
    d, line = _vote(f"{label(q)} accept at {peak[2]:,.0f}/s", f"at {base[2]:,.0f}/s", op, "p99",
                    fp, fb, "ms")
    c.evidence.append(line)
    for t in targets:
        if t != q:
            tb, tp = _window_p99(run, t, "create", base), _window_p99(run, t, "create", peak)
            if tb.known and tp.known:
                c.evidence.append(f"{label(t)} creation p99: {fmt(tb.value, 'p99')} ms at "
                                  f"{base[2]:,.0f}/s, {fmt(tp.value, 'p99')} ms at {peak[2]:,.0f}/s")
    if d > 0:
        c.verdict, c.reason = REFUTED, "producers waited longer during the spike"
    else:
        c.verdict = SUPPORTED
        c.reason = "the producers' wait for the broker's accept did not grow beyond noise"
    return c


def _window_p99(run: Run, target: str, op: str, window: tuple[float, float, float]) -> Figure:
    h = run.histogram(target, op, seconds=(window[0], window[1]))
    n = float(h.get_total_count()) if h else 0.0
    v = percentiles_ms(h, [99.0])[99.0]
    return Figure(v, v, v, 1, n)


def _no_fault(key: str, claim: str, source: str) -> Callable[[Run, pd.DataFrame], Claim]:
    def check(run: Run, df: pd.DataFrame) -> Claim:
        c = Claim(key, claim, source)
        faults = run.scenario.get("faults") or []
        if not faults:
            c.reason = "no fault was injected in this run"
        else:
            c.reason = ("this run injected faults, but this report version does not yet "
                        "analyse fault windows")
            c.evidence = [f"fault: {f}" for f in faults]
        return c
    return check


queue_isolates_consumers = _no_fault(
    "queue-isolation", "Consumer failures do not affect producers behind a queue",
    "Message queues — Pros: … resilience (consumer failures don't affect producers)")
sync_chains_cascade = _no_fault(
    "sync-cascade", "Synchronous call chains cascade failures",
    "HTTP/REST — Cons: … cascading failures (if order-service is down, this call fails)")

CHECKS: tuple[Callable[[Run, pd.DataFrame], Claim], ...] = (
    grpc_fast, rest_blocking, queue_buffers_spikes, queue_isolates_consumers,
    sync_chains_cascade)

__all__ = ["DEFAULT_NOISE", "Claim", "check_claims"]
