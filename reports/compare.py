"""`commbench compare RUN_A RUN_B`: the change of every figure from A to B, marked where it
is larger than the runs' own noise, and thresholds (`--fail-on p99:+10%`) for CI gates.

Exit codes: 0 no threshold crossed, 1 a threshold crossed, 2 bad input (ReportError).
Noise: with repetitions in both runs, a change counts when the two min–max ranges do not
overlap; otherwise the stated default band (reports.stats.DEFAULT_NOISE) applies. A change
is always relative to A, the baseline, for the band as for the printed percentage.

Too few samples: a tail percentile with fewer than MIN_TAIL_SAMPLES requests beyond it (in
either run) cannot be judged. Its change is printed but marked "too few samples", never
"within noise", and --fail-on does not check it: it is listed as NOT CHECKED and changes
the exit code neither way (a gate on p99 needs runs long enough to have a p99).

Failed and interrupted targets: a target with a repetition whose status is not `ok` in
either run (failed, interrupted, never run, or killed while measuring) is left out of the
comparison, as everywhere else: its changes are printed marked "x", never beyond noise, and
--fail-on lists them NOT CHECKED with the reason.

Offered load: in an open loop the achieved throughput is the schedule's Poisson draw, not
the system's capacity. When either run is open loop and a target's intended rate (its
`all` rows' intended_rps) differs between A and B by more than OFFERED_TOLERANCE, that
target's throughput changes are marked "~ offered load differs", never beyond noise, and
--fail-on lists them NOT CHECKED instead of judging them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from reports.errors import ReportError
from reports.findings import is_open_loop
from reports.loader import Run, load_runs
from reports.stats import (
    DEFAULT_NOISE,
    MIN_EFFECT,
    MIN_TAIL_SAMPLES,
    Figure,
    differs,
    enough_tail,
    pct_change,
    tail_need,
)
from reports.tables import METRIC, METRICS, figure, figures, fmt

OFFERED_TOLERANCE = 0.01  # intended rates further apart than this: throughput not judged
FAIL_METRICS = ("p50", "p90", "p99", "p999", "max", "throughput", "error_rate", "cpu",
                "service_p99", "memory")
_THRESHOLD = re.compile(r"^(?P<metric>[a-z_0-9]+):(?P<sign>[+-]?)(?P<amount>\d+(?:\.\d+)?)"
                        r"(?P<pct>%?)$")


@dataclass(frozen=True)
class Threshold:
    """Fail when a metric moves past `amount` in direction `sign` (+1 up, -1 down),
    relative (percent) or absolute (the metric's unit)."""

    metric: str
    sign: int
    amount: float
    relative: bool
    text: str

    def applies(self, c: Change) -> bool:
        return c.metric == self.metric

    def crossed(self, c: Change) -> bool:
        """The change moved past the threshold; never on a figure with too few samples or
        an open-loop throughput whose offered load differs."""
        if c.metric != self.metric or c.unchecked:
            return False
        move = c.change_pct if self.relative else c.b.value - c.a.value
        if math.isnan(move):
            return False
        return move * self.sign > self.amount


def parse_threshold(text: str) -> Threshold:
    m = _THRESHOLD.match(text.strip().replace(" ", ""))
    if not m:
        raise ReportError(f"--fail-on {text!r}: expected METRIC:[+|-]AMOUNT[%], e.g. p99:+10% "
                        f"or throughput:-5%; metrics: {', '.join(FAIL_METRICS)}")
    metric = m["metric"]
    if metric not in FAIL_METRICS:
        raise ReportError(f"--fail-on {text!r}: unknown metric {metric!r}; "
                        f"choose one of: {', '.join(FAIL_METRICS)}")
    worse = -1 if METRIC[metric].higher_is_better else 1
    sign = {"+": 1, "-": -1}.get(m["sign"], worse)
    return Threshold(metric, sign, float(m["amount"]), bool(m["pct"]), text)


@dataclass(frozen=True)
class Change:
    target: str
    operation: str
    metric: str
    a: Figure
    b: Figure
    change_pct: float
    beyond_noise: bool
    few_samples: bool
    offered_differs: bool = False  # open loop, intended rates apart: not judged
    left_out: str = ""  # why the target is left out (failed or interrupted), else ""

    @property
    def unchecked(self) -> bool:
        return self.few_samples or self.offered_differs or bool(self.left_out)


def changes(a: Run, b: Run, band: float = DEFAULT_NOISE) -> tuple[list[Change], list[str]]:
    """Every figure present in both runs, and a note per target/operation present in one only."""
    fa, fb = figures(a), figures(b)
    out: list[Change] = []
    notes: list[str] = []
    keys_a = _keys(fa)
    keys_b = _keys(fb)
    for key in keys_a:
        if key not in keys_b:
            notes.append(f"{key[0]} {key[1]}: only in A")
    for key in keys_b:
        if key not in keys_a:
            notes.append(f"{key[0]} {key[1]}: only in B")
    offered = offered_differs(a, b)
    left_out = not_compared(a, b)
    for target, op in (k for k in keys_a if k in keys_b):
        for m in METRICS:
            x, y = figure(fa, target, op, m.key), figure(fb, target, op, m.key)
            if not (x.known or y.known):
                continue
            few = not (enough_tail(m.key, x) and enough_tail(m.key, y))
            load = m.key == "throughput" and target in offered
            out_why = left_out.get(target, "")
            beyond = bool(differs(y, x, band, reference="b")) and not (few or load or out_why)
            out.append(Change(target, op, m.key, x, y, pct_change(y.value, x.value), beyond, few,
                              load, out_why))
    return out, notes


def not_compared(a: Run, b: Run) -> dict[str, str]:
    """Target → why it is left out: a repetition failed, was interrupted or never ran."""
    out: dict[str, str] = {}
    for label, run in (("A", a), ("B", b)):
        for t in run.context.get("targets") or []:
            if not isinstance(t, dict) or t.get("status", "ok") == "ok" or t.get("name") in out:
                continue
            measured = t.get("measured_s")
            after = f" after {float(measured):g} s" if measured else ""
            status = "killed while measuring" if t.get("status") == "running" else t.get("status")
            out[str(t.get("name"))] = (f"{status}{after} in {label} (repetition "
                                       f"{t.get('repetition', 1)})")
    return out


def intended_rates(run: Run) -> dict[str, float]:
    """Each target's intended (scheduled) rate, mean over repetitions; empty when unknown."""
    s = run.summary
    if s.empty or "intended_rps" not in s:
        return {}
    rows = s[(s["operation"] == "all") & s["intended_rps"].notna()]
    means = rows.groupby("target")["intended_rps"].mean()
    return {t: float(means[t]) for t in run.targets if t in means.index}


def offered_differs(a: Run, b: Run) -> dict[str, tuple[float, float]]:
    """Targets whose open-loop intended rate differs between the runs by more than
    OFFERED_TOLERANCE (relative to A), with both rates."""
    if not (is_open_loop(a) or is_open_loop(b)):
        return {}
    ia, ib = intended_rates(a), intended_rates(b)
    return {t: (ia[t], ib[t]) for t in ia if t in ib
            and abs(pct_change(ib[t], ia[t])) > OFFERED_TOLERANCE * 100}


def _keys(df: pd.DataFrame) -> list[tuple[str, str]]:
    if df.empty:
        return []
    return list(dict.fromkeys(zip(df["target"], df["operation"], strict=True)))


def noise_statement(a: Run, b: Run, band: float) -> str:
    ra, rb = len(a.repetitions), len(b.repetitions)
    if ra >= 2 and rb >= 2:
        return (f"noise: A has {ra} repetitions, B has {rb}; a change is marked * when the two "
                "min–max ranges across repetitions do not overlap and the change exceeds "
                f"{MIN_EFFECT * 100:.0f} %")
    return (f"noise: {'A' if ra < 2 else 'B'} has one repetition, so no measured noise; a change "
            f"(relative to A) is marked * beyond a default band of ±{band * 100:.0f} % "
            "(--noise to change it)")


def offered_statement(a: Run, b: Run) -> str | None:
    """The open-loop throughput rule, with the targets it set aside (None for closed loops)."""
    if not (is_open_loop(a) or is_open_loop(b)):
        return None
    rule = (f"offered load: open loop, so throughput follows the arrival schedule; a target "
            f"whose intended rate differs by more than {OFFERED_TOLERANCE * 100:.0f} % "
            "between A and B has its throughput marked ~ and not checked by --fail-on")
    apart = offered_differs(a, b)
    if not apart:
        return rule + "; intended rates agree here"
    return rule + "; here: " + ", ".join(
        f"{t} intended {x:,.1f} → {y:,.1f} req/s" for t, (x, y) in apart.items())


def _columns(rows: Sequence[Change]) -> list[tuple[str, int, str]]:
    """(heading, width, alignment) of each column, wide enough for its longest entry."""
    metric = max([len("metric"), *(len(_metric_label(c.metric)) for c in rows)])
    target = max([len("target"), *(len(c.target) for c in rows)])
    op = max([len("operation"), *(len(c.operation) for c in rows)])
    return [("target", target, "<"), ("operation", op, "<"), ("metric", metric, "<"),
            ("A", 12, ">"), ("B", 12, ">"), ("change", 9, ">")]


def _metric_label(metric: str) -> str:
    m = METRIC[metric]
    return f"{m.label} ({m.unit})"


def render(a: Run, b: Run, rows: Sequence[Change], notes: Sequence[str], band: float,
           crossed: Sequence[tuple[Change, Threshold]],
           unchecked: Sequence[tuple[Change, Threshold]] = ()) -> str:
    """Plain text for a terminal or a CI log (no colour, columns sized to their contents)."""
    hit = {id(c) for c, _ in crossed}
    lines = [f"commbench compare  A: {a.run_id}  B: {b.run_id}  (scenario {a.scenario_name})",
             noise_statement(a, b, band)]
    if offered := offered_statement(a, b):
        lines.append(offered)
    lines += [f"marks: * beyond noise, ? too few samples (under {MIN_TAIL_SAMPLES} requests "
              "beyond this percentile: not judged, not checked by --fail-on), "
              "~ offered load differs (not judged, not checked by --fail-on), "
              "x target failed or interrupted (left out: not judged, not checked by "
              "--fail-on), ! --fail-on threshold crossed", ""]
    cols = _columns(rows)
    head = " ".join(f"{h:{al}{w}}" for h, w, al in cols)
    lines += [head, "-" * len(head)]
    for c in rows:
        change = "–" if math.isnan(c.change_pct) else (
            "new" if math.isinf(c.change_pct) else f"{c.change_pct:+.1f} %")
        mark = ("*" if c.beyond_noise else "x" if c.left_out else "?" if c.few_samples else
                "~" if c.offered_differs else " ") + ("!" if id(c) in hit else "")
        cells = (c.target, c.operation, _metric_label(c.metric), fmt(c.a.value, c.metric),
                 fmt(c.b.value, c.metric), change)
        lines.append((" ".join(f"{v:{al}{w}}" for v, (_, w, al) in zip(cells, cols, strict=True))
                      + f" {mark}").rstrip())
    lines += ["", *notes]
    for c, t in crossed:
        lines.append(f"FAIL {t.text}: {_what(c)}"
                     + ("" if c.beyond_noise else ", within noise"))
    for c, t in unchecked:
        if c.left_out:
            lines.append(f"NOT CHECKED {t.text}: {_what(c)}: the target was {c.left_out}; "
                         "failed and interrupted targets are left out of every comparison")
        elif c.offered_differs:
            lines.append(f"NOT CHECKED {t.text}: {_what(c)}: offered load differs (open loop, "
                         f"intended rates more than {OFFERED_TOLERANCE * 100:.0f} % apart)")
        else:
            lines.append(f"NOT CHECKED {t.text}: {_what(c)}: too few samples (a {c.metric} "
                         f"needs {tail_need(c.metric):,} requests; A has {_n(c.a)}, B has "
                         f"{_n(c.b)})")
    return "\n".join(lines).rstrip() + "\n"


def _what(c: Change) -> str:
    change = "new" if math.isinf(c.change_pct) else f"{c.change_pct:+.1f} %"
    return (f"{c.target} {c.operation} {c.metric} {fmt(c.a.value, c.metric)} → "
            f"{fmt(c.b.value, c.metric)} ({change})")


def _n(f: Figure) -> str:
    return "–" if math.isnan(f.samples) else f"{f.samples:,.0f}"


def compare(path_a: Path, path_b: Path, fail_on: Sequence[str] = (),
            band: float = DEFAULT_NOISE) -> tuple[str, int]:
    """The text to print and the exit code (0, or 1 when a threshold is crossed)."""
    thresholds = [parse_threshold(t) for t in fail_on]
    if not 0 <= band < 10:
        raise ReportError(f"--noise must be a fraction such as 0.1, got {band}")
    a, b = load_runs([path_a, path_b])
    if a.scenario_name != b.scenario_name:
        raise ReportError(f"A ran scenario {a.scenario_name!r}, B ran {b.scenario_name!r}: their "
                        "figures are not comparable; compare two runs of one scenario")
    rows, notes = changes(a, b, band)
    if not rows:
        raise ReportError("the runs share no target and operation with figures; nothing to compare")
    crossed = [(c, t) for t in thresholds for c in rows if t.crossed(c)]
    unchecked = [(c, t) for t in thresholds for c in rows if t.applies(c) and c.unchecked]
    warnings = [f"A: {w}" for w in a.warnings] + [f"B: {w}" for w in b.warnings]
    text = render(a, b, rows, [*notes, *(f"warning: {w}" for w in warnings)], band, crossed,
                  unchecked)
    return text, 1 if crossed else 0
