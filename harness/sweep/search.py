"""The highest rate a target sustains within an objective: grow the offered rate
geometrically until a probe breaks the objective, then bisect between the last rate that
held and the first that broke, until they are within `precision` of each other.

A probe on which the generator saturated (it fell behind its own schedule) and that broke
the objective, or did not send the offered rate, says nothing about the target: its figures
are the generator's (harness/sweep/command.py decides which probes are void). Such a probe
never counts as the target's limit; the search stops there and reports the limit as at least
the last rate that held, bounded by the generator. A probe that held while the generator
lagged stands: lag only adds to the latency measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

GROWTH = 2.0  # each step of the first phase doubles the rate
DEFAULT_PRECISION = 0.05  # bisect until the bracket is within 5 % of the rate that held
DEFAULT_MAX_PROBES = 12


@dataclass(frozen=True)
class Probe:
    """What one run at `rate` showed."""

    rate: float
    held: bool  # every objective held (and the target did not fail)
    saturated: bool  # void: the generator fell behind and the figures may be its own
    detail: str = ""  # which objective broke, or why the probe is void


@dataclass
class Search:
    """The probes in order and the verdict they give."""

    probes: list[Probe] = field(default_factory=list)
    sustained: float | None = None  # the highest rate that held
    broke_at: float | None = None  # the lowest rate that broke the objective
    bound: str = ""  # "target": the bracket closed; "generator": a probe saturated;
    # "range": the objective held up to the highest rate allowed; "probes": out of probes

    def describe(self) -> str:
        if self.sustained is None:
            return {"generator": "no probe held before the generator saturated",
                    "probes": "no probe held"}.get(self.bound, "no probe held")
        broke = f"broke at {self.broke_at:g} req/s" if self.broke_at is not None else ""
        tail = {"target": f"({broke})",
                "generator": "or more: the generator saturated above it",
                "range": "or more: the highest rate tried",
                "probes": f"({broke}; out of probes)" if broke else "or more: out of probes",
                }[self.bound]
        return f"{self.sustained:g} req/s {tail}"


def find_max(probe: Callable[[float], Probe], start: float, *, ceiling: float = 1e6,
             precision: float = DEFAULT_PRECISION,
             max_probes: int = DEFAULT_MAX_PROBES) -> Search:
    """Run `probe` at rates chosen as above; never more than `max_probes` of them, never
    above `ceiling`. Rates are rounded to whole requests per second."""
    s = Search()
    rate = max(1.0, round(start))
    while len(s.probes) < max_probes:
        p = probe(rate)
        s.probes.append(p)
        if p.saturated:
            s.bound = "generator"
            return s
        if p.held:
            s.sustained = rate
        else:
            s.broke_at = rate
        if s.broke_at is None:
            if rate >= ceiling:
                s.bound = "range"
                return s
            rate = min(ceiling, round(rate * GROWTH))
            continue
        low = s.sustained or 0.0
        if s.sustained is not None and s.broke_at - low <= precision * low:
            s.bound = "target"
            return s
        nxt = round((low + s.broke_at) / 2) if s.sustained is not None else round(s.broke_at / GROWTH)
        if nxt in (low, s.broke_at) or nxt < 1:  # nothing left between them in whole req/s
            s.bound = "target" if s.sustained is not None else "probes"
            return s
        rate = nxt
    s.bound = "probes"
    return s
