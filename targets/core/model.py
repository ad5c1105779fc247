"""The order: one model shared by every transport, plus its plain-dict wire form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A fixed catalogue: the server owns prices, so clients cannot set them.
CATALOGUE: dict[str, int] = {
    f"SKU-{n:03d}": price
    for n, price in enumerate(
        [499, 1299, 2599, 150, 9999, 349, 7450, 1999, 820, 4500,
         12999, 275, 3350, 640, 15800, 999, 5125, 2210, 60, 43000],
        start=1,
    )
}

STATUS_CREATED = "created"
STATUS_PAID = "paid"
STATUS_SHIPPED = "shipped"
STATUS_DELIVERED = "delivered"
STATUS_CANCELLED = "cancelled"
STATUSES = (STATUS_CREATED, STATUS_PAID, STATUS_SHIPPED, STATUS_DELIVERED, STATUS_CANCELLED)
# The order flow's statuses (edge + payment + inventory). Kept out of STATUSES on purpose:
# seed data draws from that tuple with a seeded RNG, so growing it would change every
# seeded order.
STATUS_PENDING = "pending"  # stored, its saga still running
STATUS_CONFIRMED = "confirmed"  # paid and stock reserved
STATUS_REJECTED = "rejected"  # a downstream hop failed or timed out
FLOW_STATUSES = (STATUS_PENDING, STATUS_CONFIRMED, STATUS_REJECTED)
ALL_STATUSES = STATUSES + FLOW_STATUSES
TERMINAL_STATUSES = frozenset({STATUS_DELIVERED, STATUS_CANCELLED, STATUS_CONFIRMED, STATUS_REJECTED})


@dataclass(frozen=True, slots=True)
class Item:
    sku: str
    quantity: int
    unit_price_cents: int


@dataclass(frozen=True, slots=True)
class ItemRequest:
    """What a client asks for: the price comes from the catalogue."""

    sku: str
    quantity: int


@dataclass(frozen=True, slots=True)
class CreateOrder:
    request_id: str
    user_id: int
    items: tuple[ItemRequest, ...]


@dataclass(frozen=True, slots=True)
class Order:
    id: int
    user_id: int
    items: tuple[Item, ...]
    total_cents: int
    status: str
    created_at_ms: int
    request_id: str = field(default="", compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "items": [
                {"sku": i.sku, "quantity": i.quantity, "unit_price_cents": i.unit_price_cents}
                for i in self.items
            ],
            "total_cents": self.total_cents,
            "status": self.status,
            "created_at_ms": self.created_at_ms,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Order:
        return cls(
            id=int(d["id"]),
            user_id=int(d["user_id"]),
            items=tuple(
                Item(str(i["sku"]), int(i["quantity"]), int(i["unit_price_cents"]))
                for i in d["items"]
            ),
            total_cents=int(d["total_cents"]),
            status=str(d["status"]),
            created_at_ms=int(d["created_at_ms"]),
        )


def create_to_dict(req: CreateOrder) -> dict[str, Any]:
    return {
        "request_id": req.request_id,
        "user_id": req.user_id,
        "items": [{"sku": i.sku, "quantity": i.quantity} for i in req.items],
    }
