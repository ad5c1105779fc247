"""The REST wire contract of the flow's payment and inventory services, shared by their apps
and the edge's client so they cannot drift. Every call answers `{"order_id", "state"}`."""

from __future__ import annotations

import orjson

from targets.core.errors import TransportError
from targets.core.model import Order
from targets.rest import wire

CHARGE_PATH = "/payments/{order_id}/charge"
REFUND_PATH = "/payments/{order_id}/refund"
RESERVE_PATH = "/reservations/{order_id}"
RELEASE_PATH = "/reservations/{order_id}/release"


def charge_path(order_id: int) -> str:
    return f"/payments/{order_id}/charge"


def refund_path(order_id: int) -> str:
    return f"/payments/{order_id}/refund"


def reserve_path(order_id: int) -> str:
    return f"/reservations/{order_id}"


def release_path(order_id: int) -> str:
    return f"/reservations/{order_id}/release"


def charge_body(order: Order) -> bytes:
    return orjson.dumps({"user_id": order.user_id, "amount_cents": order.total_cents})


def reserve_body(order: Order) -> bytes:
    return orjson.dumps({"items": [{"sku": i.sku, "quantity": i.quantity} for i in order.items]})


def state_body(order_id: int, state: str) -> dict[str, object]:
    return {"order_id": order_id, "state": state}


def decode_state(status: int, body: bytes) -> str:
    """The state of a 200 answer; the mapped error otherwise."""
    if status != 200:
        raise wire.error_from_response(status, body)
    try:
        return str(orjson.loads(body)["state"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise TransportError("bad_response", f"HTTP 200 without a state: {body[:200]!r}") from None
