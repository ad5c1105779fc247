"""The JSON bodies exchanged over the broker, in one place for server and client.

RPC request  {"op": "get", "order_id": N} | {"op": "list", "user_id": N, "limit": N}
RPC reply    {"ok": order | [orders]} | {"error": {"kind", "message", "field"}}
Command      {"request_id", "user_id", "items": [{"sku", "quantity"}], "client_id"}
Event        {"request_id", "order": order} | {"request_id", "error": {...}}
"""

from __future__ import annotations

from typing import Any

import orjson

from targets.core.errors import InvalidRequest, OrderError, TransportError, error_from_kind
from targets.core.model import CreateOrder, create_to_dict

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
