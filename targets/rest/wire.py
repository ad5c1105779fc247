"""The REST wire contract, shared by the server and both clients so they cannot drift:
paths, the error body, and the mapping of an HTTP answer back to a domain result."""

from __future__ import annotations

from typing import Any

import orjson

from targets.core.errors import (
    InvalidRequest,
    NotFound,
    OrderError,
    TransportError,
    error_from_kind,
)
from targets.core.model import CreateOrder, Order, create_to_dict

ORDERS_PATH = "/orders"
ORDER_PATH = "/orders/{order_id}"
USER_ORDERS_PATH = "/users/{user_id}/orders"
HEALTH_PATH = "/healthz"
NOOP_PATH = "/noop"  # POST, no body → 204, no body: the transport's floor

# The only statuses whose JSON body carries a domain error; anything else is a transport error.
ERROR_STATUS: dict[str, int] = {NotFound.kind: 404, InvalidRequest.kind: 422, "unavailable": 503}
UNAVAILABLE_STATUS = ERROR_STATUS["unavailable"]  # a chain edge whose downstream failed
OK_STATUSES = frozenset({200, 201})  # 201: order created; 200: a retried request id


def order_path(order_id: int) -> str:
    return f"/orders/{order_id}"


def user_orders_path(user_id: int, limit: int) -> str:
    return f"/users/{user_id}/orders?limit={limit}"


def error_body(kind: str, message: str, field: str = "") -> dict[str, Any]:
    return {"error": {"kind": kind, "message": message, "field": field}}


def encode_create(req: CreateOrder) -> bytes:
    return orjson.dumps(create_to_dict(req))


def decode_order(status: int, body: bytes) -> Order:
    """Order from a 200/201 answer; raises the mapped error otherwise."""
    return Order.from_dict(_ok_json(status, body))


def decode_orders(status: int, body: bytes) -> list[Order]:
    return [Order.from_dict(d) for d in _ok_json(status, body)["orders"]]


def _ok_json(status: int, body: bytes) -> Any:
    if status not in OK_STATUSES:
        raise error_from_response(status, body)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise TransportError("bad_response", f"HTTP {status} with a body that is not JSON") from None


def error_from_response(status: int, body: bytes) -> OrderError:
    """A 404/422/503 with our error body is the error it names; anything else is
    `http_<status>` (a 503 from a proxy, without our body, stays `http_503`)."""
    try:
        err = orjson.loads(body)["error"]
        kind, message = str(err["kind"]), str(err["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return TransportError(f"http_{status}", f"HTTP {status}: {body[:200]!r}")
    if ERROR_STATUS.get(kind) != status:
        return TransportError(f"http_{status}", f"HTTP {status}: {kind}: {message}")
    if kind == InvalidRequest.kind:
        return InvalidRequest(message, str(err.get("field") or ""))
    return error_from_kind(kind, message)
