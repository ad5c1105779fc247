"""Deterministic seed data: the same (users, orders per user, seed) gives the same orders,
ids included, on every transport, so lookups can be compared field for field."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from targets.core.model import CATALOGUE, STATUSES, Item, Order

SEED_EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: seeded orders never depend on "now"


@dataclass(frozen=True, slots=True)
class SeedSpec:
    users: int = 100
    orders_per_user: int = 10
    seed: int = 1

    @property
    def total(self) -> int:
        return self.users * self.orders_per_user


def seed_orders(spec: SeedSpec) -> list[Order]:
    """Orders get ids 1..users*orders_per_user, user-major: user u owns ids
    (u-1)*M+1 .. u*M. The load generator relies on that layout to pick valid ids."""
    rng = random.Random(spec.seed)
    skus = sorted(CATALOGUE)
    orders: list[Order] = []
    for user in range(1, spec.users + 1):
        for _ in range(spec.orders_per_user):
            n = len(orders) + 1
            items = tuple(
                Item(sku, q, CATALOGUE[sku])
                for sku, q in ((rng.choice(skus), rng.randint(1, 5)) for _ in range(rng.randint(1, 5)))
            )
            orders.append(Order(
                id=n,
                user_id=user,
                items=items,
                total_cents=sum(i.quantity * i.unit_price_cents for i in items),
                status=rng.choice(STATUSES),
                created_at_ms=SEED_EPOCH_MS + n * 1000,
                request_id=f"seed-{n}",
            ))
    return orders


def seed_records(spec: SeedSpec) -> Iterator[dict[str, Any]]:
    """The seed orders with every field, request id included (`commbench seed` writes them),
    so an implementation in any language can load exactly the orders lookups will ask for."""
    for order in seed_orders(spec):
        yield {**order.to_dict(), "request_id": order.request_id}
