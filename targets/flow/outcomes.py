"""The seeded outcomes of the order flow: whose payments are declined, which SKU is sold out.

Payment and inventory apply these rules on every transport, so the same seed gives the same
outcome for the same order everywhere, and a check can build an order that must be declined
or must run out of stock. The draws hash (seed, label) with BLAKE2b rather than Python's
`hash`, which is salted per process.
"""

from __future__ import annotations

import hashlib

from targets.core.model import CATALOGUE, STATUS_CANCELLED, STATUS_CONFIRMED, CreateOrder
from targets.core.seed import SeedSpec

DECLINE_PER_MILLE = 20  # about 2 % of user ids are declined
AMPLE_STOCK = 10**9  # every SKU but the sold-out one: no realistic run exhausts it
_SEARCH_LIMIT = 100_000  # a user search that finds nothing this far is a bug in the rule


def _seed(seed: SeedSpec | int) -> int:
    return seed.seed if isinstance(seed, SeedSpec) else int(seed)


def _draw(seed: SeedSpec | int, label: str) -> int:
    digest = hashlib.blake2b(f"{_seed(seed)}:{label}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def declines(seed: SeedSpec | int, user_id: int) -> bool:
    """Whether the payment service declines every charge of `user_id` under `seed`."""
    return _draw(seed, f"user:{user_id}") % 1000 < DECLINE_PER_MILLE


def sold_out_sku(seed: SeedSpec | int) -> str:
    """The one SKU whose stock starts at 0 under `seed`."""
    skus = sorted(CATALOGUE)
    return skus[_draw(seed, "sold-out") % len(skus)]


def in_stock_skus(seed: SeedSpec | int) -> list[str]:
    """Every SKU but the sold-out one, in catalogue order."""
    out = sold_out_sku(seed)
    return [sku for sku in sorted(CATALOGUE) if sku != out]


def initial_stock(seed: SeedSpec | int) -> dict[str, int]:
    """The inventory's stock per SKU when its store is first created."""
    out = sold_out_sku(seed)
    return {sku: 0 if sku == out else AMPLE_STOCK for sku in sorted(CATALOGUE)}


def declining_user(seed: SeedSpec | int, start: int = 1) -> int:
    """The first user id >= `start` whose payments are declined."""
    return _find_user(seed, start, want_decline=True)


def paying_user(seed: SeedSpec | int, start: int = 1) -> int:
    """The first user id >= `start` whose payments go through."""
    return _find_user(seed, start, want_decline=False)


def _find_user(seed: SeedSpec | int, start: int, *, want_decline: bool) -> int:
    for user in range(max(1, start), max(1, start) + _SEARCH_LIMIT):
        if declines(seed, user) == want_decline:
            return user
    raise RuntimeError(f"no {'declined' if want_decline else 'paying'} user near {start}")


def expected_status(seed: SeedSpec | int, req: CreateOrder) -> str:
    """The terminal status a chain gives `req` when every service answers: cancelled when the
    payment is declined or an item is sold out, confirmed otherwise. (Stock is ample except
    for the sold-out SKU, so no realistic run makes another SKU run out.)"""
    out = sold_out_sku(seed)
    if declines(seed, req.user_id) or any(i.sku == out for i in req.items):
        return STATUS_CANCELLED
    return STATUS_CONFIRMED
