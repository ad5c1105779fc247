"""What the eventsourced target adds to the REST wire (paths, bodies), shared by its server
and its clients so they cannot drift. Everything else is the REST wire unchanged."""

from __future__ import annotations

from typing import Any

import orjson

from targets.core.errors import TransportError
from targets.core.model import Order
from targets.rest import wire as rest_wire

ORDER_AT_PATH = "/orders/{order_id}/at"  # ?at_ms=T: the order as it stood at T
ORDER_EVENTS_PATH = "/orders/{order_id}/events"  # the order's audit trail
ORDER_STATUS_PATH = "/orders/{order_id}/status"  # POST {"status", "expected_version"?}
PROJECTION_PATH = "/projection"  # appended, applied and lag of the read model
CONFLICT_STATUS = 409
CONFLICT_KIND = "conflict"


def order_at_path(order_id: int, at_ms: int) -> str:
    return f"/orders/{order_id}/at?at_ms={at_ms}"


def status_body(status: str, expected_version: int | None) -> bytes:
    return orjson.dumps({"status": status, "expected_version": expected_version})


def decode_order(status: int, body: bytes) -> Order:
    return rest_wire.decode_order(status, body)


def decode_json(status: int, body: bytes) -> Any:
    """The JSON of a 200 answer; the mapped domain error otherwise."""
    if status == CONFLICT_STATUS:
        raise TransportError(CONFLICT_KIND, _message(body))
    if status not in rest_wire.OK_STATUSES:
        raise rest_wire.error_from_response(status, body)
    return orjson.loads(body)


def _message(body: bytes) -> str:
    try:
        return str(orjson.loads(body)["error"]["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return body[:200].decode(errors="replace")
