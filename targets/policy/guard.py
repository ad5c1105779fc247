"""The policies around each downstream call of a chain edge: a Downstream (targets.flow.edge)
wrapping another, so REST and gRPC get the very same behaviour.

One call = retry( bulkhead → breaker → attempt within its timeout, deadline propagated ).
Retries are safe here because every step the edge calls is idempotent by order id:
charge, refund (targets/flow/payment.py) and reserve, release (targets/flow/inventory.py)
each keep one row per order, so a second attempt answers the first one's state and never
charges, refunds or reserves twice. Only failures without a domain answer are retried (a
TransportError: timeout, refused, 5xx); a fast failure of our own (breaker open, shed) is
not, nor is an answer such as `declined`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_fixed, wait_random_exponential

from targets.core.errors import OrderError, TransportError
from targets.core.model import Order
from targets.policy.breaker import CircuitBreaker
from targets.policy.budget import RetryBudget
from targets.policy.config import Policies
from targets.policy.events import EVENTS, PolicyEvents

# A compensation is owed whether or not its caller still waits: it carries no deadline, so
# a downstream working off a backlog never drops the refund that balances a charge it made.
COMPENSATIONS = frozenset({"refund", "release"})
SERVICE_OF = {"charge": "payment", "refund": "payment", "reserve": "inventory",
              "release": "inventory"}
FAST_FAILURES = ("breaker_open", "shed")  # our own refusals: retrying them is pointless


class Shed(TransportError):
    """A call refused without being sent: its downstream already has `bulkhead` calls."""

    def __init__(self, service: str) -> None:
        super().__init__("shed", f"{service}: bulkhead full")


def retryable(exc: BaseException) -> bool:
    return isinstance(exc, TransportError) and exc.kind not in FAST_FAILURES


class Guarded:
    """targets.flow.edge.Downstream with `policies` applied around `inner`'s calls."""

    def __init__(self, inner: Any, policies: Policies, attempt_s: float,
                 events: PolicyEvents = EVENTS) -> None:
        self.inner, self.policies, self.attempt_s, self.events = inner, policies, attempt_s, events
        self.propagate = policies.timeout_s is not None
        services = sorted(set(SERVICE_OF.values()))
        self.breakers = {s: CircuitBreaker(s, policies.breaker, events) for s in services} \
            if policies.breaker else {}
        self.in_flight = dict.fromkeys(services, 0)
        r = policies.retries
        self.retries = r if r is not None and r.kind != "none" and r.max_attempts > 1 else None
        # one budget per downstream: a healthy one's calls must not pay for a dead one's retries
        self.budgets = {s: RetryBudget(r.budget, r.budget_window_s) for s in services} \
            if self.retries is not None and r is not None and r.budget is not None else {}

    async def charge(self, order: Order, deadline: float | None = None) -> str:
        return await self._call("charge", order)

    async def refund(self, order: Order, deadline: float | None = None) -> str:
        return await self._call("refund", order)

    async def reserve(self, order: Order, deadline: float | None = None) -> str:
        return await self._call("reserve", order)

    async def release(self, order: Order, deadline: float | None = None) -> str:
        return await self._call("release", order)

    async def close(self) -> None:
        await self.inner.close()

    async def _call(self, step: str, order: Order) -> str:
        self.events.add("calls")
        budget = self.budgets.get(SERVICE_OF[step])
        if budget is not None:
            budget.called()
        if self.retries is None:
            return await self._attempt(step, order)
        r = self.retries
        retrying = AsyncRetrying(
            stop=lambda state: self._stop(state, budget), reraise=True,
            retry=retry_if_exception(retryable),
            wait=wait_fixed(r.base_s) if r.kind == "fixed"
            else wait_random_exponential(multiplier=r.base_s, max=r.cap_s),
            before=self._before)
        return str(await retrying(self._attempt, step, order))

    def _stop(self, state: RetryCallState, budget: RetryBudget | None) -> bool:
        """No further attempt after the last one, nor when the budget has none to spare."""
        assert self.retries is not None
        if state.attempt_number >= self.retries.max_attempts:
            return True
        if budget is not None and not budget.try_retry():
            self.events.add("budget_exhausted")
            return True
        return False

    def _before(self, state: RetryCallState) -> None:
        if state.attempt_number > 1:
            self.events.add("retries")

    async def _attempt(self, step: str, order: Order) -> str:
        service = SERVICE_OF[step]
        bound = self.policies.bulkhead
        if bound is not None and self.in_flight[service] >= bound:
            self.events.add("shed")
            raise Shed(service)
        breaker = self.breakers.get(service)
        if breaker is not None:
            breaker.admit()  # BreakerOpen: fail fast
        self.in_flight[service] += 1
        self.events.add("attempts")
        failed = True
        try:
            deadline = time.time() + self.attempt_s \
                if self.propagate and step not in COMPENSATIONS else None
            async with asyncio.timeout(self.attempt_s):
                state = str(await getattr(self.inner, step)(order, deadline=deadline))
            failed = False
            return state
        except TimeoutError:
            self.events.add("timeouts")
            raise TransportError("timeout", f"{step}: no answer within {self.attempt_s:g} s") \
                from None
        except TransportError as exc:
            if exc.kind == "timeout":  # the client's own timeout (aiohttp, gRPC's deadline)
                self.events.add("timeouts")
            raise
        except OrderError:  # a domain answer (not found, invalid): the downstream is well
            failed = False
            raise
        finally:
            self.in_flight[service] -= 1
            if breaker is not None:
                breaker.record(failed)
