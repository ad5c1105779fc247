"""The order service's business logic. Every transport adapter calls these methods and
nothing else, so the three systems under test differ only in how bytes travel. Its methods
are coroutines because the store may be a database across the network (PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from targets.core.errors import InvalidRequest, NotFound
from targets.core.model import (
    ALL_STATUSES,
    CATALOGUE,
    STATUS_CREATED,
    TERMINAL_STATUSES,
    CreateOrder,
    Item,
    Order,
)
from targets.core.seed import SeedSpec, seed_orders
from targets.core.store import Store, open_store
from targets.core.validation import check_create, check_id, check_limit

DEFAULT_LIST_LIMIT = 20


class OrderService:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._watchers: dict[int, set[asyncio.Queue[Order]]] = {}

    async def get_order(self, order_id: int) -> Order:
        check_id(order_id, "order_id")
        order = await self.store.get(order_id)
        if order is None:
            raise NotFound(f"order {order_id} does not exist")
        return order

    async def list_user_orders(self, user_id: int,
                               limit: int = DEFAULT_LIST_LIMIT) -> list[Order]:
        check_id(user_id, "user_id")
        check_limit(limit)
        return await self.store.list_by_user(user_id, limit)

    async def create_order(self, req: CreateOrder, status: str = STATUS_CREATED) -> tuple[Order, bool]:
        """Idempotent on `request_id`: a retry returns the first order and stores nothing.
        `status` is the new order's first status (the order flow stores it `pending`)."""
        check_create(req)
        items = tuple(Item(i.sku, i.quantity, CATALOGUE[i.sku]) for i in req.items)
        order = Order(
            id=0,
            user_id=req.user_id,
            items=items,
            total_cents=sum(i.quantity * i.unit_price_cents for i in items),
            status=status,
            created_at_ms=time.time_ns() // 1_000_000,
            request_id=req.request_id,
        )
        return await self.store.insert(order)

    async def set_status(self, order_id: int, status: str) -> Order:
        if status not in ALL_STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(ALL_STATUSES)}", "status")
        order = await self.store.set_status(order_id, status)
        if order is None:
            raise NotFound(f"order {order_id} does not exist")
        for q in self._watchers.get(order_id, ()):
            q.put_nowait(order)
        return order

    async def watch(self, order_id: int) -> AsyncIterator[Order]:
        """The order now, then each status change until a terminal status."""
        order = await self.get_order(order_id)
        queue: asyncio.Queue[Order] = asyncio.Queue()
        self._watchers.setdefault(order_id, set()).add(queue)
        try:
            yield order
            while order.status not in TERMINAL_STATUSES:
                order = await queue.get()
                yield order
        finally:
            watchers = self._watchers.get(order_id)
            if watchers is not None:
                watchers.discard(queue)
                if not watchers:
                    del self._watchers[order_id]


async def build_service(store_spec: str, seed: SeedSpec | None) -> OrderService:
    """Open the store and seed it when it is empty (a durable store keeps its data)."""
    store = await open_store(store_spec)
    try:
        if seed is not None and seed.total and await store.count() == 0:
            await store.insert_many(seed_orders(seed))
    except BaseException:
        await store.close()
        raise
    return OrderService(store)
