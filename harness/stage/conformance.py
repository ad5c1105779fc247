"""The conformance suite: the same inputs must give the same outputs and the same error
kinds on every transport. Expected answers come from the core applied to the seed data
locally, so each transport is held to one reference, not merely to its peers.

Used by `commbench verify`, by the run gate (a target that fails is not measured) and by
the test suite.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from targets.api import OrderClient
from targets.core.errors import InvalidRequest, NotFound, OrderError
from targets.core.model import (
    CATALOGUE,
    STATUS_CREATED,
    STATUS_PAID,
    CreateOrder,
    ItemRequest,
    Order,
)
from targets.core.seed import SeedSpec, seed_orders
from targets.core.validation import MAX_ITEMS, MAX_LIST_LIMIT, MAX_QUANTITY
from targets.registry import TRANSPORTS, Transport

CLOCK_SLACK_MS = 5_000
FAR_FUTURE_MS = 2**53  # a time after every event of any run (year 287,000)
SETTLE_POLL_S = 0.005  # pacing of re-reads of an eventually consistent read model
LONG_LIST = 120
CONCURRENT_CREATES = 40


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str = ""


class CheckFailed(AssertionError):
    pass


@dataclass
class _Ctx:
    client: OrderClient
    seed: SeedSpec
    orders: list[Order]
    tag: str  # makes request ids and fresh user ids unique to this verification
    created_status: Callable[[CreateOrder], str]  # the status a new order must have
    eventual: bool = False  # lookups may trail creates (the registry's eventual_reads)
    deadline_s: float = 10.0  # how long an eventual read may take to show a create

    def request_id(self, label: str) -> str:
        return f"verify-{self.tag}-{label}"

    def fresh_user(self, n: int) -> int:
        """A user id outside the seeded range, unique to this verification."""
        return self.seed.users + 1_000_000 + int(self.tag[:6], 16) * 16 + n


async def _settled(c: _Ctx, read: Callable[[], Awaitable[Any]],
                   ok: Callable[[Any], bool]) -> Any:
    """`read()`'s answer; on an eventually consistent target, re-read (a create not yet
    projected answers NotFound or an old list) until `ok` holds or the deadline passes."""
    deadline = time.monotonic() + c.deadline_s
    while True:
        try:
            got = await read()
        except NotFound:
            if not c.eventual or time.monotonic() > deadline:
                raise
        else:
            if ok(got) or not c.eventual or time.monotonic() > deadline:
                return got
        await asyncio.sleep(SETTLE_POLL_S)


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


def _same(got: Order, want: Order, what: str) -> None:
    if got.to_dict() != want.to_dict():
        raise CheckFailed(f"{what}: got {got.to_dict()}, want {want.to_dict()}")


async def _raises(kind: type[OrderError], call: Awaitable[object], what: str) -> None:
    try:
        result = await call
    except kind:
        return
    except OrderError as exc:
        raise CheckFailed(f"{what}: got error kind {exc.kind!r}, want {kind.kind!r}") from None
    raise CheckFailed(f"{what}: got {result!r}, want error kind {kind.kind!r}")


def _items(*pairs: tuple[str, int]) -> tuple[ItemRequest, ...]:
    return tuple(ItemRequest(s, q) for s, q in pairs)


def _expected_created(req: CreateOrder, got: Order, status: str) -> Order:
    """What the core must produce for `req`; id and creation time come from the server."""
    items = tuple((i.sku, i.quantity, CATALOGUE[i.sku]) for i in req.items)
    return Order.from_dict({
        "id": got.id, "user_id": req.user_id, "created_at_ms": got.created_at_ms,
        "items": [{"sku": s, "quantity": q, "unit_price_cents": p} for s, q, p in items],
        "total_cents": sum(q * p for _, q, p in items), "status": status,
    })


async def check_noop(c: _Ctx) -> None:
    """The floor operation answers nothing, and nothing else (None, no order, no error)."""
    got = await c.client.noop()
    if got is not None:
        raise CheckFailed(f"noop() returned {got!r}, expected nothing")


async def check_get_seeded(c: _Ctx) -> None:
    for order in (c.orders[0], c.orders[len(c.orders) // 2], c.orders[-1]):
        _same(await c.client.get_order(order.id), order, f"get_order({order.id})")


async def check_list_user(c: _Ctx) -> None:
    user = max(1, c.seed.users // 2)
    want = [o for o in reversed(c.orders) if o.user_id == user]
    got = await c.client.list_user_orders(user, limit=c.seed.orders_per_user)
    _expect([o.to_dict() for o in got] == [o.to_dict() for o in want],
            f"list_user_orders({user}) differs from the seed data (newest first)")
    got = await c.client.list_user_orders(user, limit=2)
    _expect([o.id for o in got] == [o.id for o in want[:2]], "limit=2 must give the 2 newest")


async def check_list_unknown_user(c: _Ctx) -> None:
    got = await c.client.list_user_orders(c.fresh_user(0), limit=5)
    _expect(got == [], f"a user without orders must list [], got {len(got)} orders")


async def check_not_found(c: _Ctx) -> None:
    await _raises(NotFound, c.client.get_order(10**15), "get_order(10**15)")


async def check_invalid_ids(c: _Ctx) -> None:
    await _raises(InvalidRequest, c.client.get_order(0), "get_order(0)")
    await _raises(InvalidRequest, c.client.get_order(-5), "get_order(-5)")
    await _raises(InvalidRequest, c.client.list_user_orders(0), "list_user_orders(0)")
    await _raises(InvalidRequest, c.client.list_user_orders(1, limit=MAX_LIST_LIMIT + 1),
                  "list_user_orders(limit too large)")
    await _raises(InvalidRequest, c.client.list_user_orders(1, limit=-1), "list_user_orders(limit=-1)")


async def check_create(c: _Ctx) -> None:
    req = CreateOrder(c.request_id("create"), 3, _items(("SKU-002", 2), ("SKU-010", 1)))
    before = time.time_ns() // 1_000_000
    got = await c.client.create_order(req)
    after = time.time_ns() // 1_000_000
    _same(got, _expected_created(req, got, c.created_status(req)), "create_order")
    _expect(got.id > len(c.orders), f"a new order must not reuse a seeded id, got {got.id}")
    _expect(before - CLOCK_SLACK_MS <= got.created_at_ms <= after + CLOCK_SLACK_MS,
            f"created_at_ms {got.created_at_ms} is not the time of creation")
    seen = await _settled(c, lambda: c.client.get_order(got.id), lambda o: o == got)
    _same(seen, got, "get_order(new id)")


async def check_create_reports_accepted(c: _Ctx) -> None:
    moments: list[int] = []
    req = CreateOrder(c.request_id("accepted"), 4, _items(("SKU-001", 1)))
    await c.client.create_order(req, on_accepted=lambda: moments.append(time.perf_counter_ns()))
    done = time.perf_counter_ns()
    _expect(len(moments) == 1, f"on_accepted must be called once, was called {len(moments)} times")
    _expect(moments[0] <= done, "on_accepted must come before completion")


async def check_idempotent_create(c: _Ctx) -> None:
    rid = c.request_id("idem")
    first = await c.client.create_order(CreateOrder(rid, 5, _items(("SKU-003", 3))))
    again = await c.client.create_order(CreateOrder(rid, 5, _items(("SKU-003", 3))))
    _same(again, first, "a retried create")
    other = await c.client.create_order(CreateOrder(rid, 6, _items(("SKU-004", 9))))
    _same(other, first, "a create reusing a request id with another payload")
    listed = await _settled(c, lambda: c.client.list_user_orders(5, limit=MAX_LIST_LIMIT),
                            lambda got: any(o.id == first.id for o in got))
    _expect(sum(o.id == first.id for o in listed) == 1, "a retried create stored a duplicate")


async def check_invalid_create(c: _Ctx) -> None:
    cases = {
        "unknown sku": CreateOrder(c.request_id("bad1"), 1, _items(("NOPE", 1))),
        "quantity 0": CreateOrder(c.request_id("bad2"), 1, _items(("SKU-001", 0))),
        "quantity too large": CreateOrder(c.request_id("bad3"), 1,
                                          _items(("SKU-001", MAX_QUANTITY + 1))),
        "no items": CreateOrder(c.request_id("bad4"), 1, ()),
        "too many items": CreateOrder(c.request_id("bad5"), 1,
                                      _items(*[("SKU-001", 1)] * (MAX_ITEMS + 1))),
        "empty request id": CreateOrder("", 1, _items(("SKU-001", 1))),
        "user 0": CreateOrder(c.request_id("bad7"), 0, _items(("SKU-001", 1))),
    }
    for what, req in cases.items():
        await _raises(InvalidRequest, c.client.create_order(req), f"create with {what}")


async def check_long_list(c: _Ctx) -> None:
    user = c.fresh_user(1)
    made = [
        await c.client.create_order(
            CreateOrder(c.request_id(f"long{n}"), user, _items(("SKU-005", n % 7 + 1))))
        for n in range(LONG_LIST)
    ]
    got = await _settled(c, lambda: c.client.list_user_orders(user, limit=MAX_LIST_LIMIT),
                         lambda got: len(got) >= len(made))
    _expect([o.to_dict() for o in got] == [o.to_dict() for o in reversed(made)],
            f"listing {LONG_LIST} orders must return them all, newest first")


async def check_concurrent_creates(c: _Ctx) -> None:
    user = c.fresh_user(2)
    reqs = [CreateOrder(c.request_id(f"conc{n}"), user, _items(("SKU-007", n + 1), ("SKU-012", 2)))
            for n in range(CONCURRENT_CREATES)]
    got = await asyncio.gather(*(c.client.create_order(r) for r in reqs))
    _expect(len({o.id for o in got}) == len(reqs), "concurrent creates must get unique ids")
    for req, order in zip(reqs, got, strict=True):
        _same(order, _expected_created(req, order, c.created_status(req)),
              f"concurrent create {req.request_id}")


async def check_temporal_query(c: _Ctx) -> None:
    """An order's state at a time, from its history: not there before its creation, created
    at it, each later status from the moment it was recorded (strictly after the event
    before it, so the server's clock alone decides)."""
    client: Any = c.client  # a TemporalClient: the registry says temporal_query
    seeded = next((o for o in c.orders if o.status != STATUS_CREATED), c.orders[0])
    await _raises(NotFound, client.order_at(seeded.id, seeded.created_at_ms - 1),
                  f"order_at({seeded.id}) before its creation")
    at_creation = await client.order_at(seeded.id, seeded.created_at_ms)
    _same(at_creation, dataclasses.replace(seeded, status=STATUS_CREATED),
          f"order_at({seeded.id}) at its creation")
    _same(await client.order_at(seeded.id, FAR_FUTURE_MS), seeded, f"order_at({seeded.id}) now")
    req = CreateOrder(c.request_id("temporal"), 7, _items(("SKU-006", 2)))
    made = await client.create_order(req)
    paid, _ = await client.change_status(made.id, STATUS_PAID)
    _same(await client.order_at(made.id, made.created_at_ms), made,
          f"order_at({made.id}) at its creation, after a status change")
    _same(await client.order_at(made.id, FAR_FUTURE_MS), paid,
          f"order_at({made.id}) after it was paid")
    await _raises(NotFound, client.order_at(made.id, made.created_at_ms - 1),
                  f"order_at({made.id}) before its creation")
    await _raises(InvalidRequest, client.order_at(0, FAR_FUTURE_MS), "order_at(0)")


CHECKS: dict[str, Callable[[_Ctx], Awaitable[None]]] = {
    "get seeded orders": check_get_seeded,
    "list a user's orders": check_list_user,
    "list an unknown user": check_list_unknown_user,
    "not found": check_not_found,
    "invalid ids and limits": check_invalid_ids,
    "create an order": check_create,
    "accepted before completed": check_create_reports_accepted,
    "idempotent create": check_idempotent_create,
    "invalid creates": check_invalid_create,
    "long user list": check_long_list,
    "concurrent creates": check_concurrent_creates,
    "noop (the floor)": check_noop,
}


# For transports whose registry entry says temporal_query.
TEMPORAL_CHECKS: dict[str, Callable[[_Ctx], Awaitable[None]]] = {
    "temporal query": check_temporal_query,
}


def checks_for(transport: Transport | None) -> dict[str, Callable[[_Ctx], Awaitable[None]]]:
    """The checks a transport is held to: every one of CHECKS, plus those of the features
    its registry entry declares."""
    if transport is not None and transport.temporal_query:
        return {**CHECKS, **TEMPORAL_CHECKS}
    return dict(CHECKS)


async def run_checks(client: OrderClient, seed: SeedSpec, timeout: float = 30.0,
                     created_status: Callable[[CreateOrder], str] | None = None) -> list[Check]:
    """Every check, each bounded in time; a failure never stops the others. `created_status`
    gives the status a new order must have (default: created; a chain topology settles it,
    see harness.flow_checks.chain_status). The client's transport, looked up in the
    registry, says whether its reads are eventual and which feature checks apply."""
    transport = TRANSPORTS.get(client.transport)
    ctx = _Ctx(client, seed, seed_orders(seed), uuid.uuid4().hex[:12],
               created_status or (lambda _req: STATUS_CREATED),
               eventual=transport is not None and transport.eventual_reads)
    return await run_all(checks_for(transport), ctx, timeout)


async def run_all(checks: Mapping[str, Callable[[Any], Awaitable[None]]], ctx: Any,
                  timeout: float) -> list[Check]:
    """Each check on `ctx`, bounded in time; a failure never stops the others."""
    results: list[Check] = []
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check(ctx), timeout)
        except CheckFailed as exc:
            results.append(Check(name, False, str(exc)))
        except TimeoutError:
            results.append(Check(name, False, f"no answer within {timeout:.0f} s"))
        except OrderError as exc:
            results.append(Check(name, False, f"unexpected error {exc.kind}: {exc}"))
        else:
            results.append(Check(name, True))
    return results
