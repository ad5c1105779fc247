"""What the policies did, counted in the process that did it and read by the harness over
the control socket (`{"query": "policies"}`, targets/control.py), outside the measured path.

Counters are cumulative since the process started; the harness turns them into per-second
columns. Breaker state changes are also kept one by one with their CLOCK_MONOTONIC time,
which every process on the host shares, so the harness places them on its own timeline.
One service runs per process, so one `EVENTS` per process is the whole truth.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

COUNTERS = (
    "calls",             # downstream calls the edge's saga made (each hop once)
    "attempts",          # calls actually sent downstream, retries included
    "retries",           # retry sent
    "budget_exhausted",  # a retry wanted but refused by the retry budget
    "timeouts",          # attempts that ran out of their per-attempt timeout
    "breaker_opened",
    "breaker_half_open",
    "breaker_closed",
    "breaker_rejected",  # calls failed fast while a breaker was open (or half-open and full)
    "shed",              # calls the bulkhead refused (its downstream already at its bound)
    "edge_shed",         # requests the edge server refused at its concurrency limit
    "deadline_expired",  # work a downstream dropped because its caller's deadline had passed
)
MAX_TRANSITIONS = 10_000  # kept for the harness to read; older ones are dropped first


class PolicyEvents:
    def __init__(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._transitions: deque[dict[str, Any]] = deque(maxlen=MAX_TRANSITIONS)
        self._seq = 0

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] += n

    def transition(self, service: str, state: str) -> None:
        """A breaker guarding `service` entered `state` (opened, half_open, closed)."""
        self.counts[f"breaker_{state}"] += 1
        self._transitions.append({"seq": self._seq, "service": service, "state": state,
                                  "t_ns": time.monotonic_ns()})
        self._seq += 1

    def snapshot(self, events_from: int = 0) -> dict[str, Any]:
        """The counters, and the state changes numbered `events_from` or later."""
        return {"counters": dict(self.counts),
                "transitions": [t for t in self._transitions if t["seq"] >= events_from]}


EVENTS = PolicyEvents()
