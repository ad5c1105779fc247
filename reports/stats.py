"""When does a difference between two figures count? One rule for findings, claims and compare.

With repetitions, two figures differ when their min–max ranges across repetitions do not
overlap and they are more than MIN_EFFECT apart (a few repetitions understate the noise).
With a single repetition there is no measured noise, so a stated default band is used: the
figures differ when they are more than DEFAULT_NOISE apart. Findings and compare may use
that band; claim verdicts may not (see `noise_measured`): one run is an observation only.

A relative gap is always measured against a reference that is stated: the baseline in
compare (run A), else the larger of the two values. So "-9 %" can never count as beyond a
±10 % band, whichever way round the two figures are given.

A tail percentile also needs enough requests beyond it to mean anything (MIN_TAIL_SAMPLES).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

DEFAULT_NOISE = 0.10  # ±10 % when a run has one repetition
MIN_EFFECT = 0.05  # smaller differences are never called, whatever the repetitions say
# Claim verdicts ask more: with few repetitions min–max ranges separate by chance (two
# repetitions per figure: about one time in three), so a verdict needs CLAIM_MIN_REPS
# repetitions and a gap over CLAIM_MIN_EFFECT.
CLAIM_MIN_EFFECT = 0.10
CLAIM_MIN_REPS = 3
MIN_TAIL_SAMPLES = 10  # requests beyond a percentile needed to judge it

PERCENTILE_OF = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9, "service_p99": 99.0}

Reference = Literal["larger", "b"]


@dataclass(frozen=True)
class Figure:
    """One reported number with its spread across repetitions and its sample size."""

    value: float
    lo: float
    hi: float
    reps: int = 1
    samples: float = math.nan  # successful requests behind it

    @property
    def known(self) -> bool:
        return not math.isnan(self.value)


def noise_measured(a: Figure, b: Figure) -> bool:
    """Both figures come from at least two repetitions, so their spread is a measured noise."""
    return a.reps >= 2 and b.reps >= 2


def noise_rule(a: Figure, b: Figure, band: float = DEFAULT_NOISE) -> str:
    """The rule that applies to this pair, in words for the report."""
    if noise_measured(a, b):
        return f"non-overlapping repetition ranges and a gap over {MIN_EFFECT * 100:.0f} %"
    return f"more than the ±{band * 100:.0f} % default noise band (one repetition)"


def rel_gap(a: float, b: float, reference: Reference = "larger") -> float:
    """(a − b) relative to b (the baseline) or to the larger magnitude; NaN when unknown,
    ±inf when the baseline is zero and a is not."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    ref = abs(b) if reference == "b" else max(abs(a), abs(b))
    if ref == 0:
        return 0.0 if a == b else math.copysign(math.inf, a - b)
    return (a - b) / ref


def differs(a: Figure, b: Figure, band: float = DEFAULT_NOISE,
            reference: Reference = "larger", min_effect: float = MIN_EFFECT) -> int:
    """-1 if a is clearly lower than b, +1 if clearly higher, 0 if within noise or unknown.

    The relative gap is measured against `reference` (see rel_gap); with measured noise it
    must also exceed `min_effect` (claims pass CLAIM_MIN_EFFECT)."""
    if not (a.known and b.known):
        return 0
    gap = rel_gap(a.value, b.value, reference)
    if noise_measured(a, b):
        if abs(gap) <= min_effect:
            return 0
        if a.hi < b.lo:
            return -1
        if a.lo > b.hi:
            return 1
        return 0
    if abs(gap) <= band:
        return 0
    return -1 if gap < 0 else 1


def enough_tail(metric: str, fig: Figure) -> bool:
    """A percentile is judged only when MIN_TAIL_SAMPLES requests lie beyond it."""
    p = PERCENTILE_OF.get(metric)
    if p is None or math.isnan(fig.samples):
        return True
    return fig.samples * (1 - p / 100) >= MIN_TAIL_SAMPLES


def tail_need(metric: str) -> int:
    """Requests needed behind a percentile figure for enough_tail (0 when no percentile)."""
    p = PERCENTILE_OF.get(metric)
    return 0 if p is None else math.ceil(MIN_TAIL_SAMPLES / (1 - p / 100) - 1e-9)


def pct_change(new: float, old: float) -> float:
    """Relative change in percent against the baseline `old`; inf when growing from zero,
    NaN when unknown."""
    return rel_gap(new, old, "b") * 100.0
