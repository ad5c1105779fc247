"""The highest rate a target sustains within an objective: grow the offered rate
geometrically until a probe breaks the objective, then bisect between the last rate that
held and the first that broke, until they are within `precision` of each other.

A probe on which the generator saturated (it fell behind its own schedule) or lagged (it kept
the rate, but its lag could account for a fifth or more of the p99) and that broke the
objective, or did not send the offered rate, says nothing about the target: its figures
are the generator's (harness/sweep/command.py decides which probes are void). Such a probe
never counts as the target's limit. It bounds the search from above all the same (the
generator cannot offer that rate), so the bisection goes on below it, and when the bracket
closes under a void probe the limit is reported as at least the last rate that held,
bounded by the generator at the void rate. A probe that held while the generator lagged
stands: lag only adds to the latency measured.
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
    saturated: bool  # void: the generator was flagged and the figures may be its own
    detail: str = ""  # which objective broke, or why the probe is void
    lagging: bool = False  # void with the rate kept: the generator's lag, not its pace

    @property
    def void_word(self) -> str:
        """How max.csv marks a void probe ('' when it is not void)."""
        return ("lagging" if self.lagging else "saturated") if self.saturated else ""


@dataclass
class Search:
    """The probes in order and the verdict they give."""

    probes: list[Probe] = field(default_factory=list)
    sustained: float | None = None  # the highest rate that held
    broke_at: float | None = None  # the lowest rate that broke the objective
    void_at: float | None = None  # the lowest rate at which the generator saturated (or lagged)
    void_lagging: bool = False  # the generator kept that rate; its lag may have broken it
    bound: str = ""  # "target": the bracket closed; "generator": it closed under a void probe;
    # "range": the objective held up to the highest rate allowed; "probes": out of probes

    def describe(self) -> str:
        if self.sustained is None:
            return {"generator": f"no probe held before the generator {self._void_verb}",
                    "probes": "no probe held"}.get(self.bound, "no probe held")
        broke = f"broke at {self.broke_at:g} req/s" if self.broke_at is not None else ""
        tail = {"target": f"({broke})",
                "generator": ("or more: the generator saturated above it" if self.void_at is None
                              else f"or more: the generator {self._void_verb} at {self.void_at:g} "
                              "req/s"),
                "range": "or more: the highest rate tried",
                "probes": f"({broke}; out of probes)" if broke else "or more: out of probes",
                }[self.bound]
        return f"{self.sustained:g} req/s {tail}"

    @property
    def _void_verb(self) -> str:
        return ("lagged (it kept the rate; its lag could account for a fifth or more of the p99)"
                if self.void_lagging else "saturated")


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
            if s.void_at is None or rate < s.void_at:
                s.void_at, s.void_lagging = rate, p.lagging
        elif p.held:
            s.sustained = rate
        else:
            s.broke_at = rate
        top = min((r for r in (s.broke_at, s.void_at) if r is not None), default=None)
        if top is None:
            if rate >= ceiling:
                s.bound = "range"
                return s
            rate = min(ceiling, round(rate * GROWTH))
            continue
        low = s.sustained or 0.0
        by = "target" if top == s.broke_at else "generator"
        if s.sustained is not None and top - low <= precision * low:
            s.bound = by
            return s
        nxt = round((low + top) / 2) if s.sustained is not None else round(top / GROWTH)
        if nxt in (low, top) or nxt < 1:  # nothing left between them in whole req/s
            s.bound = by if s.sustained is not None else ("generator" if by == "generator"
                                                          else "probes")
            return s
        rate = nxt
    void_on_top = s.void_at is not None and (s.broke_at is None or s.void_at < s.broke_at)
    s.bound = "generator" if void_on_top else "probes"
    return s
