"""The policies an edge applies, as plain frozen values read from the `--policies` JSON.

The harness validates the scenario's `[policies]` table (harness/scenario/policies.py) and
hands its wire form to the edge; this side only reads it, so targets never import the
harness. Every part is optional: absent means that policy is off.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

RETRY_KINDS = ("none", "fixed", "exponential")


@dataclass(frozen=True)
class Retries:
    kind: str  # none | fixed | exponential (full jitter)
    max_attempts: int  # the first attempt included
    base_s: float  # fixed: the wait; exponential: the first step's cap
    cap_s: float  # exponential: the largest wait
    budget: float | None  # retries at most this fraction of calls in the window; None: unbounded
    budget_window_s: float


@dataclass(frozen=True)
class Breaker:
    failure_rate: float  # open when at least this share of the window's calls failed
    window: int  # the last calls judged
    min_calls: int  # no judgement on fewer calls than this
    open_s: float  # how long it stays open before it lets probes through
    probes: int  # half-open: calls let through; all must succeed to close


@dataclass(frozen=True)
class Policies:
    name: str = "none"
    timeout_s: float | None = None  # per attempt; set: deadlines are propagated downstream
    retries: Retries | None = None
    breaker: Breaker | None = None
    bulkhead: int | None = None  # concurrent calls per downstream; excess is shed at once
    shed: int | None = None  # the edge's own concurrency limit (uvicorn, grpc)

    @property
    def active(self) -> bool:
        """Any policy on the hops (shedding at the edge is the server's, not the hops')."""
        return bool(self.timeout_s or self.breaker or self.bulkhead
                    or (self.retries and self.retries.kind != "none"))

    def hop_limit_s(self, attempt_s: float) -> float:
        """The longest one hop may take, every attempt and wait included (the edge's safety
        net around the guard, which enforces each attempt's own timeout)."""
        r = self.retries
        if r is None or r.kind == "none":
            return attempt_s
        waits = (r.max_attempts - 1) * (r.base_s if r.kind == "fixed" else r.cap_s)
        return attempt_s * r.max_attempts + waits

    @classmethod
    def from_json(cls, text: str) -> Policies:
        """`--policies` (the scenario's [policies] table as JSON, validated by the harness,
        durations in seconds) → Policies; ValueError with a one-line reason."""
        if not text:
            return cls()
        try:
            raw = json.loads(text)
            r, b = raw.get("retries"), raw.get("breaker")
            return cls(
                name=str(raw.get("name", "policies")), timeout_s=_num(raw.get("timeout")),
                retries=Retries(r["kind"], int(r["max_attempts"]), float(r["base"]),
                                float(r["cap"]), _num(r.get("budget")),
                                float(r["budget_window"])) if r else None,
                breaker=Breaker(float(b["failure_rate"]), int(b["window"]), int(b["min_calls"]),
                                float(b["open_for"]), int(b["probes"])) if b else None,
                bulkhead=_int(raw.get("bulkhead")), shed=_int(raw.get("shed")))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"--policies: not a policies object ({type(exc).__name__}: {exc})") \
                from None


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def _int(v: Any) -> int | None:
    return None if v is None else int(v)
