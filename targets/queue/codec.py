"""The JSON bodies exchanged over the broker, in one place for server and client.

RPC request  {"op": "get", "order_id": N} | {"op": "list", "user_id": N, "limit": N}
RPC reply    {"ok": order | [orders]} | {"error": {"kind", "message", "field"}}
Command      {"request_id", "user_id", "items": [{"sku", "quantity"}], "client_id"}
Event        {"request_id", "order": order} | {"request_id", "error": {...}}
Saga event   {"event", "order": order, "request_id", "client_id"} (routing key = event); the
             command's request and client ids travel along, so the edge can complete the
             create for the client that sent it without keeping any state of its own
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from targets.core.errors import InvalidRequest, OrderError, TransportError, error_from_kind
from targets.core.model import CreateOrder, Order, create_to_dict
from targets.flow.events import EVENTS

CONTENT_TYPE = "application/json"
MAX_CLIENT_ID = 64

dumps = orjson.dumps
loads = orjson.loads


class Malformed(Exception):
    """A message that cannot be served at all: it is dead-lettered, never retried."""


def error_body(exc: OrderError) -> dict[str, str]:
    return {"kind": exc.kind, "message": exc.message, "field": getattr(exc, "field", "")}


def error_from_body(err: Any) -> OrderError:
    """Rebuild the domain error a reply or event carries (unknown shapes: a protocol error)."""
    if not isinstance(err, dict):
        return TransportError("protocol", f"unexpected error body {err!r}")
    kind, message = str(err.get("kind", "error")), str(err.get("message", ""))
    if kind == InvalidRequest.kind:
        return InvalidRequest(message, str(err.get("field", "")))
    return error_from_kind(kind, message)


def decode_object(body: bytes) -> dict[str, Any]:
    try:
        value = loads(body)
    except orjson.JSONDecodeError:
        raise Malformed("body is not JSON") from None
    if not isinstance(value, dict):
        raise Malformed("body is not a JSON object")
    return value


def command_keys(d: dict[str, Any]) -> tuple[Any, str]:
    """(request_id, client_id) of a create command: what routing its outcome back needs.

    The request id only has to be echoable (any JSON scalar, even "" or a number): whether it
    is a valid one is the core's rule, answered with an "invalid" event, not a dead letter.
    """
    if "request_id" not in d or isinstance(d["request_id"], (dict, list)):
        raise Malformed("command has no request_id")
    client_id = d.get("client_id")
    if not isinstance(client_id, str) or not 1 <= len(client_id) <= MAX_CLIENT_ID:
        raise Malformed("command has no client_id")
    return d["request_id"], client_id


def encode_command(req: CreateOrder, client_id: str) -> bytes:
    return dumps({**create_to_dict(req), "client_id": client_id})


@dataclass(frozen=True, slots=True)
class SagaMessage:
    event: str
    order: Order
    request_id: Any  # echoed from the command, as its outcome event does
    client_id: str


def encode_saga(event: str, order: Order, request_id: Any, client_id: str) -> bytes:
    return dumps({"event": event, "order": order.to_dict(), "request_id": request_id,
                  "client_id": client_id})


def decode_saga(body: bytes) -> SagaMessage:
    d = decode_object(body)
    event, client_id = d.get("event"), d.get("client_id")
    if event not in EVENTS:
        raise Malformed(f"unknown saga event {event!r}")
    if not isinstance(client_id, str) or len(client_id) > MAX_CLIENT_ID:
        raise Malformed("saga event has no client_id")
    try:
        order = Order.from_dict(d["order"])
    except (KeyError, TypeError, ValueError) as exc:
        raise Malformed(f"saga event has no valid order: {exc!r}") from None
    return SagaMessage(event, order, d.get("request_id"), client_id)
