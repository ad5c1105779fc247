"""The article's speed claims judged on a sweep (`commbench sweep`), not on one run.

One run at one offered rate cannot say which transport carries more: both kept up, or the
generator was the limit. A sweep measures each target across rates, so these figures decide
"gRPC is faster than REST" (each a vote, as in reports.claims.grpc_fast):

- the highest rate sustained within the objectives (max.csv, `--find-max`): the limit lies
  in [the rate that held, the rate that broke), so it differs only when those brackets are
  apart. A limit the generator set ("or more: the generator saturated at R") measures
  the generator, never the target, so it never decides;
- the server's CPU per request at each offered rate both ran without failing (shown also as
  requests per server core-second): the target's own cost, counted even where the generator
  fell behind, since it divides the target's CPU by the requests the target served, but
  only over MIN_CPU_TICKS clock ticks per repetition (below, the figure is too coarse);
- latency p50 and p99 at each offered rate both *held*: no failure, the generator kept its
  schedule (its lag would be in the latency), every objective held (past it, latency is a
  backlog growing with the probe's length) and the target answered SHORT_OF of the requests
  sent.

"REST's blocking call costs its caller time" keeps reports.claims.rest_blocking's meaning:
the REST caller's wait for its completed creation (p50) against a queue producer's wait for
the broker's accept, now at every offered rate both held. How each wait grew with the rate,
and the caller's (generator's) CPU per request, are stated beside it but not counted: the
claim is about time waited, and an asyncio caller spends no CPU while it waits.

A target's figure at one rate comes from its repetitions there: median, min–max, count. The
verdict rules are reports.claims' (Vote, decide: CLAIM_MIN_REPS repetitions, ranges apart,
gap over CLAIM_MIN_EFFECT); fewer repetitions give an observation, never a verdict.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from html import escape
from pathlib import Path

import pandas as pd

from reports.claims import (
    GRPC_FAST,
    REST_BLOCKING,
    STACKS_CAVEAT,
    UNDECIDED,
    Claim,
    Vote,
    _vote,
    decide,
)
from reports.errors import ReportError
from reports.findings import label, op_noun, possessive
from reports.loader import load_run
from reports.pairs import pick
from reports.stats import CLAIM_MIN_EFFECT, CLAIM_MIN_REPS, Figure, differs, enough_tail, tail_need

# CPU times are counted in clock ticks (psutil on Linux: 10 ms), so a CPU per request over a
# short probe is coarse: 8 ticks make 800 or 900 µs and nothing between. A CPU figure counts
# only when every repetition's CPU spans MIN_CPU_TICKS ticks (one tick within 2 %).
CPU_TICK_S = 0.01
MIN_CPU_TICKS = 50
SHORT_OF = 0.95  # below this share of the offered rate (of the requests sent, for the
# claims): the target did not keep up


@dataclass(frozen=True)
class SweepData:
    """What the claims read from a sweep folder (tests build it by hand)."""

    probes: pd.DataFrame  # sweep.csv: one row per probe, target and repetition
    maxima: pd.DataFrame | None = None  # max.csv (after --find-max)
    ops: pd.DataFrame | None = None  # the probes' summary.csv rows, with offered_rps
    probe_clients: frozenset[str] = frozenset()  # targets driven by a probe client
    notes: tuple[str, ...] = ()  # probe folders that could not be read


def load_sweep(folder: Path, probes: pd.DataFrame) -> SweepData:
    """sweep.csv's rows plus max.csv and each probe run's per-operation summary (read as the
    run report reads it: a damaged probe folder is left out with a note, not misread)."""
    maxima = pd.read_csv(folder / "max.csv") if (folder / "max.csv").is_file() else None
    frames, clients, notes = [], set(), []
    for run_name, rows in probes.groupby("run", sort=False):
        try:
            run = load_run(folder / "probes" / str(run_name))
        except ReportError as exc:
            notes.append(f"per-operation figures of probe {run_name} left out: {exc}")
            continue
        clients |= run.probes()
        if not run.summary.empty:
            frames.append(run.summary.assign(offered_rps=float(rows["offered_rps"].iloc[0])))
    ops = pd.concat(frames, ignore_index=True) if frames else None
    return SweepData(probes, maxima, ops, frozenset(clients), tuple(notes))


def sweep_claims(data: SweepData) -> list[Claim]:
    return [grpc_fast(data), rest_blocking(data)]


# ---- what one target did at one offered rate ------------------------------------------------

def _rows(data: SweepData, target: str, rate: float) -> pd.DataFrame:
    p = data.probes
    return p[(p["target"] == target) & (p["offered_rps"] == rate)]


def _flag(v: object) -> bool | None:
    """sweep.csv's true/false cells as pandas read them (empty: None)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v if isinstance(v, bool) else str(v).strip().lower() == "true"


def generator_flags(rows: pd.DataFrame) -> list[str]:
    """Each probe's generator flag: 'saturated', 'lagging' or ''. A sweep written before the
    `generator` column existed has only `saturated` (either kind), read as 'saturated'."""
    kinds = rows["generator"] if "generator" in rows else [None] * len(rows)
    return [k if isinstance(k, str) and k else "saturated" if _flag(s) else ""
            for k, s in zip(kinds, rows["saturated"], strict=True)]


def _ran(rows: pd.DataFrame) -> bool:
    return not rows.empty and bool((rows["status"] == "ok").all())


def _not_held(rows: pd.DataFrame, name: str) -> str | None:
    """Why a target's latency at this rate cannot be compared, or None: it held."""
    if not _ran(rows):
        return f"{name} failed"
    kinds = set(generator_flags(rows)) - {""}
    if kinds:
        return f"the generator {'saturated' if 'saturated' in kinds else 'lagged'} on {name}"
    broke = [str(b) for b, h in zip(rows["broken"], rows["held"], strict=True)
             if _flag(h) is False]
    if broke:
        return f"{name} broke the objectives ({broke[0]})"
    answered = min(float(t) / float(a) if a else 0.0
                   for t, a in zip(rows["throughput_rps"], rows["achieved_rps"], strict=True))
    if answered < SHORT_OF:
        return f"{name} answered {answered:.0%} of the requests sent"
    return None


def _fig(values: pd.Series, samples: float = math.nan) -> Figure:
    vals = [float(v) for v in values if not pd.isna(v)]
    if not vals:
        return Figure(math.nan, math.nan, math.nan, 0)
    return Figure(statistics.median(vals), min(vals), max(vals), len(vals), samples)


def _op_rows(data: SweepData, target: str, rate: float, op: str) -> pd.DataFrame | None:
    """One operation's rows of the probe runs of `target` at `rate` (None: none read)."""
    o = data.ops
    if o is None:
        return None
    sel = o[(o["target"] == target) & (o["offered_rps"] == rate) & (o["operation"] == op)]
    return sel if not sel.empty else None


def _samples(data: SweepData, target: str, rate: float) -> float:
    """Requests behind a target's latency at `rate`, every repetition's (NaN: unknown)."""
    sel = _op_rows(data, target, rate, "all")
    return math.nan if sel is None else float(sel["count"].sum())


def _op_fig(data: SweepData, target: str, rate: float, op: str, column: str) -> Figure:
    """A per-operation figure of the probe runs at `rate`: median over repetitions, the
    requests of every repetition as its samples."""
    sel = _op_rows(data, target, rate, op)
    if sel is None:
        return Figure(math.nan, math.nan, math.nan, 0)
    return _fig(sel[column], float(sel["count"].sum()))


def _cpu_ticks(data: SweepData, target: str, rate: float, rows: pd.DataFrame) -> float:
    """Clock ticks of target CPU behind its least-measured repetition at `rate` (NaN:
    unknown, when the probes' summaries were not read)."""
    counts = _op_rows(data, target, rate, "all")
    if counts is None:
        return math.nan
    cpu = rows.merge(counts[["repetition", "count"]], on="repetition")
    ticks = cpu["cpu_us_per_request"] * cpu["count"] / 1e6 / CPU_TICK_S
    return float(ticks.min()) if not ticks.dropna().empty else math.nan


def _short(a: pd.DataFrame, b: pd.DataFrame, name_a: str, name_b: str) -> str:
    """The rates actually sent, when the generator fell short of the offered one on either
    side (the loads behind a CPU figure then differ; SHORT_OF leaves Poisson noise out)."""
    sent = [float(x["achieved_rps"].median()) for x in (a, b)]
    offered = float(a["offered_rps"].iloc[0])
    if min(sent) >= SHORT_OF * offered:
        return ""
    return f" (the generator sent {name_a} {sent[0]:,.0f} and {name_b} {sent[1]:,.0f} req/s)"


def _shared(data: SweepData, a: str, b: str) -> list[float]:
    p = data.probes
    return sorted(set(p.loc[p["target"] == a, "offered_rps"])
                  & set(p.loc[p["target"] == b, "offered_rps"]))


def _targets(data: SweepData) -> list[str]:
    return [t for t in dict.fromkeys(data.probes["target"]) if t not in data.probe_clients]


# ---- gRPC is faster than REST -----------------------------------------------------------------

def _limit(data: SweepData, target: str) -> tuple[Figure | None, str, str]:
    """A target's sustained rate as a figure spanning [held, broke at), its words, and why it
    cannot decide ("" when it can; no figure then)."""
    m = data.maxima
    row = m[m["target"] == target] if m is not None else None
    if row is None or row.empty:
        return None, "", "not searched"
    r = row.iloc[0]
    said = f"{label(target)} {r['verdict']}"
    if r["bound"] == "generator":
        return None, said, (f"{label(target)}'s limit was set by the generator, not the "
                            "target, and a limit the generator set never decides")
    if pd.isna(r["sustained_rps"]):
        return None, said, f"no rate held on {label(target)}, so its limit is unknown"
    reps = int(data.probes[data.probes["target"] == target]
               .groupby("offered_rps").size().min())
    hi = math.inf if pd.isna(r["broke_at_rps"]) else float(r["broke_at_rps"])
    return Figure(float(r["sustained_rps"]), float(r["sustained_rps"]), hi, reps), said, ""


def _limit_vote(data: SweepData, g: str, r: str, evidence: list[str]) -> list[Vote]:
    """The sustained rates as a vote (-1: gRPC higher), when both can decide."""
    (fg, sg, wg), (fr, sr, wr) = _limit(data, g), _limit(data, r)
    if not (sg and sr):
        return []
    what = "highest rate sustained within the objectives"
    if fg is None or fr is None:
        why = "; ".join(w for w in (wg, wr) if w)
        if data.maxima is not None and (data.maxima["bound"] == "generator").all():
            why = "the generator set both limits, not the targets, and it never decides"
        evidence.append(f"{what}: {sg}; {sr}; not counted: {why}")
        return []
    d = differs(fg, fr, min_effect=CLAIM_MIN_EFFECT)
    reps = min(fg.reps, fr.reps)
    mark = ("the ranges between the rate that held and the one that broke are apart and the "
            f"gap is over {CLAIM_MIN_EFFECT * 100:.0f} %" if d else
            f"the ranges overlap or the gap is {CLAIM_MIN_EFFECT * 100:.0f} % or less")
    if reps < CLAIM_MIN_REPS:
        mark += f"; {reps} repetition(s) per probe, too few for a verdict"
    evidence.append(f"{what}: {sg}; {sr}: {mark}")
    return [Vote(-d, reps, evidence[-1])]


def grpc_fast(data: SweepData) -> Claim:
    c = Claim(*GRPC_FAST)
    targets = _targets(data)
    g = pick(targets, "grpc")
    r = pick(targets, "rest", like=g)
    if not (g and r):
        c.reason = "needs both a REST and a gRPC target in the sweep"
        return c
    votes = _limit_vote(data, g, r, c.evidence)
    skipped: list[str] = []
    for rate in _shared(data, g, r):
        rg, rr = _rows(data, g, rate), _rows(data, r, rate)
        at = f"at {rate:g} req/s"
        if _ran(rg) and _ran(rr):
            fg, fr = _fig(rg["cpu_us_per_request"]), _fig(rr["cpu_us_per_request"])
            known = [t for t in (_cpu_ticks(data, g, rate, rg), _cpu_ticks(data, r, rate, rr))
                     if not math.isnan(t)]
            ticks = min(known, default=math.inf)  # unknown counts, as enough_tail has it
            if fg.known and fr.known and fg.value > 0 and fr.value > 0:
                v = _vote(label(g), label(r), f"server CPU per request {at}", "cpu", fg, fr, "µs")
                line = (f"{v.line}; {1e6 / fg.value:,.0f} vs {1e6 / fr.value:,.0f} requests "
                        "per server core-second" + _short(rg, rr, label(g), label(r)))
                if ticks < MIN_CPU_TICKS:
                    line += (f"; not counted: a repetition's CPU spans {ticks:.0f} clock ticks "
                             f"of {CPU_TICK_S * 1e3:.0f} ms, too coarse to separate them "
                             f"(needs {MIN_CPU_TICKS}: longer probes or higher rates)")
                else:
                    votes.append(v)
                c.evidence.append(line)
        why = _not_held(rg, label(g)) or _not_held(rr, label(r))
        if why:
            skipped.append(f"{at}: {why}")
            continue
        for m, col in (("p50", "latency_p50_ms"), ("p99", "latency_p99_ms")):
            fg, fr = _fig(rg[col], _samples(data, g, rate)), _fig(rr[col], _samples(data, r, rate))
            if not (enough_tail(m, fg) and enough_tail(m, fr)):
                c.evidence.append(f"requests {at}, {m}: too few requests to judge the tail "
                                  f"(needs {tail_need(m):,} per target)")
            elif fg.known and fr.known:
                votes.append(_vote(label(g), label(r), f"requests {at}", m, fg, fr, "ms"))
                c.evidence.append(votes[-1].line)
    if skipped:
        c.evidence.append("latency not compared " + "; ".join(skipped))
    c.evidence += data.notes
    if not votes:
        c.verdict = UNDECIDED
        c.reason = "no figure could be counted (each line above says why)" + STACKS_CAVEAT
        return c
    decide(c, votes, ("gRPC", "REST"), ("gRPC ahead", "REST ahead"))
    c.observation = c.observation.replace("in this run", "in this sweep")
    c.reason += STACKS_CAVEAT
    return c


# ---- REST's blocking call costs its caller time ---------------------------------------------

def rest_blocking(data: SweepData) -> Claim:
    c = Claim(*REST_BLOCKING)
    targets = _targets(data)
    r = pick(targets, "rest")
    q = pick(targets, "queue", like=r)
    if not (r and q):
        c.reason = "needs a REST and a queue target in the sweep; 'simple' is not measurable"
        return c
    votes, waits, cpu, skipped = [], [], [], []
    for rate in _shared(data, r, q):
        rr, rq = _rows(data, r, rate), _rows(data, q, rate)
        fr = _op_fig(data, r, rate, "create", "latency_p50_ms")
        fa = _op_fig(data, q, rate, "create_accepted", "latency_p50_ms")
        if not (fr.known and fa.known):
            continue
        if why := _not_held(rr, label(r)) or _not_held(rq, label(q)):
            skipped.append(f"at {rate:g} req/s: {why}")
            continue
        v = _vote(f"{label(r)} completed", f"{label(q)} accepted",
                  f"{op_noun('create')} at {rate:g} req/s", "p50", fr, fa, "ms",
                  (label(r), label(q)))
        votes.append(Vote(-v.direction, v.reps, v.line))  # -1: the queue producer sooner
        c.evidence.append(v.line)
        waits.append((rate, fr.value, fa.value))
        cr, cq = _fig(rr["client_cpu_us_per_request"]), _fig(rq["client_cpu_us_per_request"])
        if cr.known and cq.known:
            cpu.append(f"{label(r)} {cr.value:,.0f} µs vs {label(q)} {cq.value:,.0f} µs at "
                       f"{rate:g} req/s")
    if not votes and not skipped:
        c.reason = ("needs order creations on both (the queue's accepted and completed "
                    "moments) at a rate both were offered; this sweep has none")
        c.evidence += data.notes  # a probe folder that could not be read may hold them
        return c
    if len(waits) >= 2:
        (lo, r0, q0), (hi, r1, q1) = waits[0], waits[-1]
        c.evidence.append(
            f"from {lo:g} to {hi:g} req/s {possessive(r)} completed wait (p50) went from "
            f"{r0:.2f} to {r1:.2f} ms (×{r1 / r0:.2f}), {possessive(q)} accept wait from "
            f"{q0:.2f} to {q1:.2f} ms (×{q1 / q0:.2f}); stated, not counted")
    if cpu:
        c.evidence.append("the caller's (generator's) CPU per request: " + "; ".join(cpu)
                          + "; not counted: the claim is about time waited, and an asyncio "
                            "caller spends no CPU while it waits")
    if skipped:
        c.evidence.append("waits not compared " + "; ".join(skipped))
    c.evidence += data.notes
    tail = "; 'simple' is not something a benchmark measures"
    if not votes:
        c.verdict, c.reason = UNDECIDED, "no offered rate at which both held" + tail
        return c
    decide(c, votes, ("the queue producer", "the REST caller"),
           ("the queue producer released sooner", "the REST caller answered sooner"))
    c.observation = c.observation.replace("in this run", "in this sweep")
    c.reason += tail
    return c


# ---- the report's section ------------------------------------------------------------------

def claims_html(claims: list[Claim]) -> str:
    """The claims as the run report shows them: verdict, the figures behind it, the reason."""
    rows = []
    for c in claims:
        evidence = "".join(f"<li>{escape(e)}</li>" for e in c.evidence)
        obs = f'<br><span class="note">{escape(c.observation)}</span>' if c.observation else ""
        rows.append(f'<tr><td>{escape(c.claim)}</td><td class="note">{escape(c.source)}</td>'
                    f'<td><span class="verdict {c.verdict.replace(" ", "-")}">{c.verdict}'
                    f"</span></td><td>{'<ul>' + evidence + '</ul>' if evidence else ''}"
                    f'<span class="note">{escape(c.reason)}</span>{obs}</td></tr>')
    return ("<h2>The article's claims, on the sweep</h2>"
            '<p class="note">Judged on the sweep\'s figures: the highest rate sustained within '
            "the objectives (never a limit the generator set), the server's CPU per request and "
            "latency at offered rates both targets held. A verdict needs at least three "
            "repetitions per probe whose ranges separate, and a gap over 10 %; fewer give an "
            "observation, never a verdict.</p>"
            '<table class="claims"><tr><th>claim</th><th>article</th><th>verdict</th>'
            "<th>numbers behind the verdict</th></tr>" + "".join(rows) + "</table>")
