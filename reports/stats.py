"""When does a difference between two figures count? One rule for findings, claims and compare.

With repetitions, two figures differ when their min–max ranges across repetitions do not
overlap and they are more than MIN_EFFECT apart (a few repetitions understate the noise).
With a single repetition there is no measured noise, so a stated default band is used: the
figures differ when they are more than DEFAULT_NOISE apart. A tail percentile also needs
enough requests beyond it to mean anything (MIN_TAIL_SAMPLES).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_NOISE = 0.10  # ±10 % when a run has one repetition
MIN_EFFECT = 0.05  # smaller differences are never called, whatever the repetitions say
MIN_TAIL_SAMPLES = 10  # requests beyond a percentile needed to judge it

PERCENTILE_OF = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9, "service_p99": 99.0}


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


def noise_rule(a: Figure, b: Figure, band: float = DEFAULT_NOISE) -> str:
    """The rule that applies to this pair, in words for the report."""
    if a.reps >= 2 and b.reps >= 2:
        return f"non-overlapping repetition ranges and a gap over {MIN_EFFECT * 100:.0f} %"
    return f"more than the ±{band * 100:.0f} % default noise band (one repetition)"


def differs(a: Figure, b: Figure, band: float = DEFAULT_NOISE) -> int:
    """-1 if a is clearly lower than b, +1 if clearly higher, 0 if within noise or unknown."""
    if not (a.known and b.known):
        return 0
    base = min(abs(a.value), abs(b.value))
    if a.reps >= 2 and b.reps >= 2:
        if base and abs(a.value - b.value) / base <= MIN_EFFECT:
            return 0
        if a.hi < b.lo:
            return -1
        if a.lo > b.hi:
            return 1
        return 0
    if base == 0:
        if a.value == b.value:
            return 0
        return -1 if a.value < b.value else 1
    gap = (a.value - b.value) / base
    if abs(gap) <= band:
        return 0
    return -1 if gap < 0 else 1


def enough_tail(metric: str, fig: Figure) -> bool:
    """A percentile is judged only when MIN_TAIL_SAMPLES requests lie beyond it."""
    p = PERCENTILE_OF.get(metric)
    if p is None or math.isnan(fig.samples):
        return True
    return fig.samples * (1 - p / 100) >= MIN_TAIL_SAMPLES


def pct_change(new: float, old: float) -> float:
    """Relative change in percent; inf when growing from zero, NaN when unknown."""
    if math.isnan(new) or math.isnan(old):
        return math.nan
    if old == 0:
        return 0.0 if new == 0 else math.copysign(math.inf, new)
    return (new - old) / abs(old) * 100.0
