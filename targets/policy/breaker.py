"""A circuit breaker per downstream: closed → open on a failure rate over the last calls,
open → half-open after a fixed time, half-open → closed when every probe succeeds (→ open
again on the first failing probe).

Written here, not taken from a library: purgatory (asyncio) opens on consecutive failures,
not on a rate over a window of calls, and aiobreaker is unmaintained since 2021; neither
timestamps its state changes where the harness can read them. This one is ~80 lines, has no
I/O and no task of its own (half-open is entered by the first call after the open time, so
under load its timestamp is that call's arrival), and reports every change to PolicyEvents.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from targets.core.errors import TransportError
from targets.policy.config import Breaker
from targets.policy.events import PolicyEvents

CLOSED, OPEN, HALF_OPEN = "closed", "opened", "half_open"


class BreakerOpen(TransportError):
    """A call refused without being sent: the downstream's breaker is open."""

    def __init__(self, service: str) -> None:
        super().__init__("breaker_open", f"{service}: circuit breaker open")


class CircuitBreaker:
    def __init__(self, service: str, spec: Breaker, events: PolicyEvents,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.service, self.spec, self.events = service, spec, events
        self._now = clock
        self.state = CLOSED
        self._outcomes: deque[bool] = deque(maxlen=spec.window)  # True: failed
        self._opened_at = 0.0
        self._probes_out = 0  # half-open: probes let through and not yet answered
        self._probes_ok = 0

    def admit(self) -> None:
        """Before a call: return to send it, BreakerOpen to fail it fast."""
        if self.state == OPEN:
            if self._now() - self._opened_at < self.spec.open_s:
                self._reject()
            self._enter(HALF_OPEN)
        if self.state == HALF_OPEN:
            if self._probes_out + self._probes_ok >= self.spec.probes:
                self._reject()
            self._probes_out += 1

    def record(self, failed: bool) -> None:
        """After an admitted call: its outcome."""
        if self.state == HALF_OPEN:
            self._probes_out = max(0, self._probes_out - 1)
            if failed:
                self._open()
            else:
                self._probes_ok += 1
                if self._probes_ok >= self.spec.probes:
                    self._enter(CLOSED)
            return
        if self.state == OPEN:  # a call admitted before it opened: already judged
            return
        self._outcomes.append(failed)
        n = len(self._outcomes)
        if n >= self.spec.min_calls and sum(self._outcomes) >= self.spec.failure_rate * n:
            self._open()

    def _reject(self) -> None:
        self.events.add("breaker_rejected")
        raise BreakerOpen(self.service)

    def _open(self) -> None:
        self._opened_at = self._now()
        self._enter(OPEN)

    def _enter(self, state: str) -> None:
        self.state = state
        self._outcomes.clear()
        self._probes_out = self._probes_ok = 0
        self.events.transition(self.service, state)
