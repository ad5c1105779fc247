"""Conformance checks of the order flow (topology chain: the edge with its payment and
inventory services), through the client interface only, like harness/stage/conformance.py.

Expected outcomes come from the seeded rules (targets.flow.outcomes), so every transport is
held to one reference: a paying user's in-stock order ends confirmed, a declined user's ends
cancelled, an order with the sold-out SKU ends cancelled (its payment refunded: that is the
reconciliation's to verify), and a retried create gives the same single order. Against a
chain edge, run the existing suite too, with the statuses a chain settles:

    await run_checks(client, seed, created_status=chain_status(seed))   # harness.stage.conformance
    await run_flow_checks(client, seed)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from harness.stage.conformance import Check, CheckFailed, run_all
from targets.api import OrderClient
from targets.core.model import (
    STATUS_CANCELLED,
    STATUS_CONFIRMED,
    CreateOrder,
    ItemRequest,
    Order,
)
from targets.core.seed import SeedSpec
from targets.core.validation import MAX_LIST_LIMIT
from targets.flow.outcomes import (
    declining_user,
    expected_status,
    in_stock_skus,
    paying_user,
    sold_out_sku,
)

RETRIES = 3  # concurrent attempts of one request id, then one more after they settled


def chain_status(seed: SeedSpec) -> Callable[[CreateOrder], str]:
    """The status a chain gives a new order (for run_checks' `created_status`)."""
    return partial(expected_status, seed)


@dataclass
class _Ctx:
    client: OrderClient
    seed: SeedSpec
    tag: str  # makes request ids and user ids unique to this verification

    def request_id(self, label: str) -> str:
        return f"flow-{self.tag}-{label}"

    def user(self, n: int, *, declined: bool = False) -> int:
        """A user outside the seeded range, unique to this verification, whose payments are
        declined or go through as asked."""
        start = self.seed.users + 2_000_000 + int(self.tag[:6], 16) * 64 + n * 8
        return declining_user(self.seed, start) if declined else paying_user(self.seed, start)


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


async def _created(c: _Ctx, req: CreateOrder, want: str, what: str) -> Order:
    """Create `req`, expect status `want`, and expect a lookup to agree."""
    got = await c.client.create_order(req)
    _expect(got.status == want, f"{what}: status {got.status!r}, want {want!r}")
    looked_up = await c.client.get_order(got.id)
    _expect(looked_up.to_dict() == got.to_dict(),
            f"{what}: get_order({got.id}) gives {looked_up.to_dict()}, create gave {got.to_dict()}")
    return got


async def check_confirmed(c: _Ctx) -> None:
    skus = in_stock_skus(c.seed)
    req = CreateOrder(c.request_id("ok"), c.user(0),
                      (ItemRequest(skus[0], 2), ItemRequest(skus[-1], 1)))
    await _created(c, req, STATUS_CONFIRMED, "a paid, in-stock order")


async def check_declined(c: _Ctx) -> None:
    req = CreateOrder(c.request_id("declined"), c.user(1, declined=True),
                      (ItemRequest(in_stock_skus(c.seed)[0], 1),))
    await _created(c, req, STATUS_CANCELLED, "an order whose payment is declined")


async def check_sold_out(c: _Ctx) -> None:
    # With an in-stock item beside it: all or nothing is reserved.
    req = CreateOrder(c.request_id("sold-out"), c.user(2),
                      (ItemRequest(in_stock_skus(c.seed)[0], 1), ItemRequest(sold_out_sku(c.seed), 1)))
    await _created(c, req, STATUS_CANCELLED, "an order with a sold-out item")


async def check_retried_create(c: _Ctx) -> None:
    user = c.user(3)
    req = CreateOrder(c.request_id("retry"), user, (ItemRequest(in_stock_skus(c.seed)[1], 3),))
    first = await asyncio.gather(*(c.client.create_order(req) for _ in range(RETRIES)))
    again = await c.client.create_order(req)
    ids = {o.id for o in (*first, again)}
    _expect(len(ids) == 1, f"one request id created {len(ids)} orders: {sorted(ids)}")
    _expect(all(o.status == STATUS_CONFIRMED for o in (*first, again)),
            f"retried creates answered {sorted({o.status for o in (*first, again)})}, want confirmed")
    listed = await c.client.list_user_orders(user, limit=MAX_LIST_LIMIT)
    _expect([o.id for o in listed] == [again.id],
            f"the user has orders {[o.id for o in listed]}, want just {again.id}")


FLOW_CHECKS: dict[str, Callable[[_Ctx], Awaitable[None]]] = {
    "chain: a normal order is confirmed": check_confirmed,
    "chain: a declined payment cancels": check_declined,
    "chain: a sold-out item cancels": check_sold_out,
    "chain: a retried create is one order": check_retried_create,
}


async def run_flow_checks(client: OrderClient, seed: SeedSpec, timeout: float = 30.0) -> list[Check]:
    """Every flow check, each bounded in time; a failure never stops the others."""
    return await run_all(FLOW_CHECKS, _Ctx(client, seed, uuid.uuid4().hex[:12]), timeout)
