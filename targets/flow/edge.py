"""The edge of a synchronous chain (REST, gRPC): store the order pending, charge it, reserve
its stock, and settle it before answering.

Outcomes: charged and reserved → confirmed; declined → cancelled; out of stock → refunded,
then cancelled. A hop that fails or exceeds the per-hop timeout rejects the order after a
best-effort compensation (refund, release): the payment's and inventory's tombstones make a
charge or reserve that arrives after its compensation harmless. The saga runs as its own
task, so a caller that gives up (client timeout, disconnect) never strands a half-done order,
and a retried create waits for the same task instead of starting another.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from targets.core.errors import OrderError
from targets.core.model import (
    STATUS_CANCELLED,
    STATUS_CONFIRMED,
    STATUS_PENDING,
    STATUS_REJECTED,
    CreateOrder,
    Order,
)
from targets.core.service import OrderService
from targets.flow.inventory import RESERVED
from targets.flow.orders import answer, settle
from targets.flow.payment import CHARGED

log = logging.getLogger("commbench.flow")


class Downstream(Protocol):
    """Payment and inventory as the edge sees them; each transport implements it with its own
    client. Each call answers the service's state (targets.flow.payment / .inventory states)
    or raises an OrderError (TransportError for no answer). `deadline` (absolute Unix time),
    when given, travels with the call (targets/policy/deadline.py)."""

    async def charge(self, order: Order, deadline: float | None = None) -> str: ...

    async def refund(self, order: Order, deadline: float | None = None) -> str: ...

    async def reserve(self, order: Order, deadline: float | None = None) -> str: ...

    async def release(self, order: Order, deadline: float | None = None) -> str: ...

    async def close(self) -> None: ...


class ChainEdge:
    """Creates orders through the chain; lookups stay on the OrderService (no downstream)."""

    def __init__(self, orders: OrderService, downstream: Downstream, hop_timeout_s: float) -> None:
        self.orders = orders
        self.downstream = downstream
        self.hop_timeout_s = hop_timeout_s
        self._sagas: dict[int, asyncio.Task[Order]] = {}

    async def create_order(self, req: CreateOrder) -> tuple[Order, bool]:
        """Idempotent on request_id like the core: a retry gets the first order, waiting for
        its saga if it is still running (or resuming it, every step being idempotent, when
        this process did not start it). Raises Unavailable for a rejected order."""
        order, new = await self.orders.create_order(req, status=STATUS_PENDING)
        if order.status == STATUS_PENDING:
            order = await asyncio.shield(self._saga_of(order))
        return answer(order), new

    def _saga_of(self, order: Order) -> asyncio.Task[Order]:
        task = self._sagas.get(order.id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._saga(order))
            self._sagas[order.id] = task
            task.add_done_callback(lambda _t: self._sagas.pop(order.id, None))
        return task

    async def _saga(self, order: Order) -> Order:
        paid = await self._hop("charge", order)
        if paid is None:
            return await self._reject(order, refund=True, release=False)
        if paid != CHARGED:  # declined, or refused by a tombstone
            return await settle(self.orders, order.id, STATUS_CANCELLED)
        reserved = await self._hop("reserve", order)
        if reserved is None:
            return await self._reject(order, refund=True, release=True)
        if reserved == RESERVED:
            return await settle(self.orders, order.id, STATUS_CONFIRMED)
        if await self._hop("refund", order) is None:  # out of stock, and the refund failed
            return await self._reject(order, refund=False, release=False)
        return await settle(self.orders, order.id, STATUS_CANCELLED)

    async def _reject(self, order: Order, *, refund: bool, release: bool) -> Order:
        """Compensate once, best effort (a failure here is for reconciliation to find); both
        at once, so a rejection costs at most one more hop timeout."""
        steps = [step for step, wanted in (("release", release), ("refund", refund)) if wanted]
        await asyncio.gather(*(self._hop(step, order) for step in steps))
        return await settle(self.orders, order.id, STATUS_REJECTED)

    async def _hop(self, step: str, order: Order) -> str | None:
        """One downstream call within the hop timeout: its answer, or None when it failed."""
        try:
            async with asyncio.timeout(self.hop_timeout_s):
                return str(await getattr(self.downstream, step)(order))
        except TimeoutError:
            log.warning("order %d: %s got no answer within %g s", order.id, step, self.hop_timeout_s)
        except OrderError as exc:
            log.warning("order %d: %s failed: %s: %s", order.id, step, exc.kind, exc.message)
        return None
