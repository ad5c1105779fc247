"""Headline findings: plain sentences computed from a run's figures, said only where the data
decides them (differences beyond the noise rule of reports.stats, tails with enough samples,
throughput only when it measured capacity rather than the offered rate)."""

from __future__ import annotations

import math

import pandas as pd

from reports.loader import Run
from reports.stats import (
    DEFAULT_NOISE,
    MIN_EFFECT,
    MIN_TAIL_SAMPLES,
    Figure,
    differs,
    enough_tail,
    noise_measured,
    noise_rule,
)
from reports.tables import figure, fmt

_TRANSPORT_LABEL = {"rest": "REST", "grpc": "gRPC", "queue": "the queue"}
_OP_NOUN = {"get": "order lookups", "list": "order listings", "create": "order creations",
            "create_accepted": "accepted order creations", "all": "requests"}
COMPARED_OPS = ("get", "list", "create")


def label(target: str) -> str:
    """rest → REST, rest-httpx → REST (httpx), unknown names unchanged."""
    base, _, variant = target.partition("-")
    name = _TRANSPORT_LABEL.get(base, target if not variant else base)
    return f"{name} ({variant})" if variant and base in _TRANSPORT_LABEL else name


def possessive(target: str) -> str:
    return f"{label(target)}'s"


def op_noun(op: str) -> str:
    return _OP_NOUN.get(op, f"{op} requests")


def saturated_targets(run: Run) -> list[str]:
    """Targets on which the generator was flagged (run.json or summary.csv): it fell behind
    its schedule, or kept it but its lag could account for a fifth or more of the latency
    p99 (harness.run.window). Either way their latency may hold the generator's delay."""
    names = {t["name"] for t in run.context.get("targets", []) if t.get("saturated")}
    s = run.summary
    if not s.empty and "saturated" in s:
        names |= set(s.loc[s["saturated"].astype(bool), "target"])
    return [t for t in run.targets if t in names]


def behind_targets(run: Run) -> list[str]:
    """The flagged targets on which the generator fell behind (in any repetition): their
    throughput measures the generator. A flag recorded without its kind (a run written
    before run.json had `schedule`) counts as behind, as it did then."""
    lagging_only = {t["name"] for t in run.context.get("targets", [])
                    if (t.get("schedule") or {}).get("flag") == "lagging"}
    behind = {t["name"] for t in run.context.get("targets", []) if t.get("saturated")
              and (t.get("schedule") or {}).get("flag") != "lagging"}
    return [t for t in saturated_targets(run) if t in behind or t not in lagging_only]


def flagged_words(run: Run, targets: list[str]) -> str:
    """What the generator did on the flagged ones among `targets`, in a clause."""
    sat = [t for t in saturated_targets(run) if t in targets]
    behind = set(behind_targets(run))
    fell = [label(t) for t in sat if t in behind]
    lag = [label(t) for t in sat if t not in behind]
    parts = ([f"the generator fell behind on {', '.join(fell)}"] if fell else []) + (
        [f"the generator's schedule lag could account for a fifth or more of the latency p99 "
         "on "
         f"{', '.join(lag)}"] if lag else [])
    return " and ".join(parts)


def failed_target_names(run: Run) -> set[str]:
    """Targets with any repetition whose status is not ok (their figures are not compared)."""
    return set(run.failed_targets())


def compared_targets(run: Run, df: pd.DataFrame) -> list[str]:
    """Targets whose figures findings and claims may compare: measured and not failed."""
    failed = failed_target_names(run)
    return [t for t in run.targets if t not in failed and (df["target"] == t).any()]


def generator_behind(run: Run, targets: list[str]) -> str | None:
    """Why latency cannot decide a comparison among targets, or None: the generator fell
    behind on one of them, so its latency holds the generator's delay too. Findings and
    claims both use this one rule, whichever target of the pair was the slower."""
    sat = [t for t in saturated_targets(run) if t in targets]
    if not sat:
        return None
    return f"{flagged_words(run, sat)}, which inflates {'its' if len(sat) == 1 else 'their'} latency"


def is_open_loop(run: Run) -> bool:
    load = run.scenario.get("load") or {}
    model = str(load.get("model", "")).lower()
    if model:
        return model == "open"
    s = run.summary
    return not s.empty and s["intended_rps"].notna().any()


def throughput_comparable(run: Run, targets: list[str]) -> tuple[bool, str]:
    """Whether throughput measured the targets' capacity here, and if not, why in words."""
    failed = [t for t in targets if t in failed_target_names(run)]
    if failed:
        return False, f"{', '.join(map(label, failed))} failed during the run"
    sat = [t for t in behind_targets(run) if t in targets]
    if sat:
        return False, (f"the generator fell behind on {', '.join(map(label, sat))}, so "
                       "throughput there measures the generator, not the target")
    if is_open_loop(run):
        return False, ("open loop: every target was offered the same rate and kept up, so "
                       "throughput equals the offered rate and does not separate them")
    return True, ""


def times(x: float) -> str:
    """A ratio for prose: 2.7, 27, 2,700 (two significant digits from 10 on)."""
    if x < 10:
        return f"{x:.1f}"
    digits = int(math.floor(math.log10(x))) - 1
    return f"{round(x, -digits):,.0f}"


def change_words(a: float, b: float, noun: str) -> str:
    """'a 40 % lower p99' / 'a 2.1× higher p99' / 'a 2,700× lower p99' for a against b.

    Percentages only for small differences (a within half to double of b); beyond that a
    ratio, so a 2,700-fold gap never reads as "100 % lower"."""
    if b == 0 or math.isnan(a) or math.isnan(b):
        return f"a different {noun}"
    r = a / b
    if r <= 0.5:
        return f"{_article(times(1 / r))} {times(1 / r)}× lower {noun}" if r > 0 else \
            f"a far lower {noun}"
    if r < 1:
        n = f"{(1 - r) * 100:.0f}"
        return f"{_article(n)} {n} % lower {noun}"
    if r < 2:
        n = f"{(r - 1) * 100:.0f}"
        return f"{_article(n)} {n} % higher {noun}"
    return f"{_article(times(r))} {times(r)}× higher {noun}"


def _article(number: str) -> str:
    """'an 18 %', 'an 8 %', 'a 40 %', 'an 11,000×': 'an' before a spoken vowel."""
    digits = number.replace(",", "").split(".")[0]
    eleven = digits[:2] in ("11", "18") and len(digits) % 3 == 2
    return "an" if digits.startswith("8") or eleven else "a"


def pair_sentence(run: Run, df: pd.DataFrame, op: str, a: str, b: str,
                  comparable: bool) -> str | None:
    """One sentence comparing target a (the faster at p50) with b on one operation."""
    fa, fb = figure(df, a, op, "p50"), figure(df, b, op, "p50")
    if not (fa.known and fb.known):
        return None
    parts: list[str] = []
    d50 = differs(fa, fb)
    if d50:
        parts.append(f"{change_words(fa.value, fb.value, 'median latency')} "
                     f"({fmt(fa.value, 'p50')} vs {fmt(fb.value, 'p50')} ms)")
    pa, pb = figure(df, a, op, "p99"), figure(df, b, op, "p99")
    if enough_tail("p99", pa) and enough_tail("p99", pb) and differs(pa, pb):
        parts.append(f"{change_words(pa.value, pb.value, 'p99')} "
                     f"({fmt(pa.value, 'p99')} vs {fmt(pb.value, 'p99')} ms)")
    ta, tb = figure(df, a, op, "throughput"), figure(df, b, op, "throughput")
    lead = f"{label(a)} answered {op_noun(op)}"
    if comparable and differs(ta, tb) and tb.value > 0:
        lead = (f"{label(a)} served {op_noun(op)} at {ta.value / tb.value:.1f}× "
                f"{possessive(b)} throughput")
    if not parts:
        if lead.startswith(f"{label(a)} served"):
            return f"{lead}, with latency within noise."
        # one repetition decides nothing (claims.py): say "counted", never "decided"
        when = "decided" if noise_measured(fa, fb) else "counted"
        return (f"{label(a)} and {label(b)} answered {op_noun(op)} alike: median "
                f"{fmt(fa.value, 'p50')} vs {fmt(fb.value, 'p50')} ms, a difference within "
                f"noise ({when} only when {noise_rule(fa, fb)}).")
    joined = parts[0] if len(parts) == 1 else f"{parts[0]} and {parts[1]}"
    if generator_behind(run, [a, b]):
        return (f"{label(a)} answered {op_noun(op)} with {joined} than {label(b)}, but "
                f"{flagged_words(run, [a, b])}, so part of that gap may be the generator's: "
                + ("not decided." if noise_measured(fa, fb) else "not counted."))
    if lead.startswith(f"{label(a)} served"):
        return f"{lead}, at {joined} than {label(b)}."
    return f"{lead} with {joined} than {label(b)}."


def findings(run: Run, df: pd.DataFrame) -> list[str]:
    """Headline sentences for one run."""
    out: list[str] = []
    if df.empty:
        return ["No figures: the run recorded no measurements."]
    targets = compared_targets(run, df)
    comparable, why = throughput_comparable(run, targets)
    if is_open_loop(run) and not behind_targets(run) and run.rate and comparable is False \
            and not run.failed_targets():
        out.append(f"The generator kept to the offered {run.rate:,.0f} requests/s on every target "
                   "(open loop), so latency, not throughput, separates them.")
    elif not comparable and len(targets) > 1:
        out.append(f"Throughput is not compared: {why}.")
    behind = set(behind_targets(run))
    if lagging := [t for t in saturated_targets(run) if t not in behind and t in targets]:
        out.append(f"On {', '.join(map(label, lagging))} the generator kept the rate, but its "
                   "schedule lag could account for a fifth or more of the latency p99, so "
                   f"latency gaps involving {'it' if len(lagging) == 1 else 'them'} may be "
                   "partly the generator's and are not counted.")
    for t in sorted(failed_target_names(run) & set(df["target"])):
        out.append(f"{label(t)} failed during the run: its figures are in the tables but are "
                   "not compared.")
    ops = [op for op in COMPARED_OPS if (df["operation"] == op).any()] or ["all"]
    for op in ops:
        ranked = _ranked(df, op, targets)
        for other in ranked[1:]:
            s = pair_sentence(run, df, op, ranked[0], other, comparable)
            if s:
                out.append(s)
    out += _cpu_sentences(df, targets)
    out += _error_sentences(run, df, [t for t in run.targets if (df["target"] == t).any()])
    return out


def _ranked(df: pd.DataFrame, op: str, targets: list[str]) -> list[str]:
    known = [(figure(df, t, op, "p50").value, t) for t in targets]
    return [t for v, t in sorted(known) if not math.isnan(v)]


def _transport(target: str) -> str:
    return target.partition("-")[0]


def _cpu_sentences(df: pd.DataFrame, targets: list[str]) -> list[str]:
    """Target CPU between transports; between variants of one transport (one server, two
    clients) the target's CPU differs only by noise, so the load generator's CPU, where the
    clients' cost lies, is compared instead."""
    out: list[str] = []
    figs = {t: figure(df, t, "all", "cpu") for t in targets}
    figs = {t: f for t, f in figs.items() if f.known}
    if len(figs) >= 2:
        best = min(figs, key=lambda t: figs[t].value)
        for t, f in figs.items():
            if _transport(t) == _transport(best) or differs(figs[best], f) >= 0:
                continue
            out.append(f"{label(best)} used {_less(figs[best], f)} per request than "
                       f"{label(t)} ({figs[best].value:,.0f} vs {f.value:,.0f} µs).")
    for transport in dict.fromkeys(map(_transport, targets)):
        client = {t: figure(df, t, "all", "client_cpu") for t in targets
                  if _transport(t) == transport}
        client = {t: f for t, f in client.items() if f.known}
        if len(client) < 2:
            continue
        best = min(client, key=lambda t: client[t].value)
        for t, f in client.items():
            if t == best or differs(client[best], f) >= 0:
                continue
            out.append(f"The load generator used {_less(client[best], f)} per request with "
                       f"{label(best)} than with {label(t)} ({client[best].value:,.0f} vs "
                       f"{f.value:,.0f} µs): both talk to the same server, so the "
                       "difference is the client's.")
    return out


def _less(b: Figure, f: Figure) -> str:
    r = f.value / b.value if b.value else math.inf
    return (f"{times(r)}× less CPU" if r >= 2 else
            f"{(1 - b.value / f.value) * 100:.0f} % less CPU")


def _error_sentences(run: Run, df: pd.DataFrame, targets: list[str]) -> list[str]:
    out = []
    for t in targets:
        f = figure(df, t, "all", "error_rate")
        if not f.known or f.value <= 0:
            continue
        kinds = ""
        e = run.errors
        if not e.empty:
            by_kind = e[e["target"] == t].groupby("kind")["count"].sum().sort_values(
                ascending=False)
            kinds = ", ".join(f"{k} ×{int(n):,}" for k, n in by_kind.head(4).items())
        out.append(f"{fmt(f.value, 'error_rate')} of {possessive(t)} requests failed"
                   + (f" ({kinds})." if kinds else "."))
    return out


def noise_note(df: pd.DataFrame) -> str:
    """How differences were judged, for the report's reader."""
    reps = int(df["reps"].max()) if not df.empty else 1
    if reps >= 2:
        return (f"{reps} repetitions: a difference counts when the two targets' min–max ranges "
                f"across repetitions do not overlap and they differ by more than "
                f"{MIN_EFFECT * 100:.0f} %; tail percentiles count only with at least "
                f"{MIN_TAIL_SAMPLES} requests beyond them.")
    return (f"One repetition: a difference counts when it exceeds a ±{DEFAULT_NOISE * 100:.0f} % "
            f"noise band (a default, not measured); tail percentiles count only with at least "
            f"{MIN_TAIL_SAMPLES} requests beyond them.")


__all__ = ["Figure", "findings", "label", "noise_note", "op_noun", "throughput_comparable"]
