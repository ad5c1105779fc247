"""Validation rules, applied once in the core so no transport can drift from them."""

from __future__ import annotations

from typing import Any

from targets.core.errors import InvalidRequest
from targets.core.model import CATALOGUE, CreateOrder, ItemRequest

MIN_ITEMS, MAX_ITEMS = 1, 50
MIN_QUANTITY, MAX_QUANTITY = 1, 1000
MAX_REQUEST_ID = 64
MAX_LIST_LIMIT = 1000
ID_MAX = 2**63 - 1


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_id(value: object, field: str) -> int:
    if not _is_int(value) or not 1 <= value <= ID_MAX:  # type: ignore[operator]
        raise InvalidRequest(f"{field} must be a positive integer", field)
    return value  # type: ignore[return-value]


def check_limit(value: object) -> int:
    if not _is_int(value) or not 1 <= value <= MAX_LIST_LIMIT:  # type: ignore[operator]
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_LIST_LIMIT}", "limit")
    return value  # type: ignore[return-value]


def check_create(req: CreateOrder) -> CreateOrder:
    if not isinstance(req.request_id, str) or not 1 <= len(req.request_id) <= MAX_REQUEST_ID:
        raise InvalidRequest(
            f"request_id must be a string of 1 to {MAX_REQUEST_ID} characters", "request_id"
        )
    check_id(req.user_id, "user_id")
    if not MIN_ITEMS <= len(req.items) <= MAX_ITEMS:
        raise InvalidRequest(f"an order holds {MIN_ITEMS} to {MAX_ITEMS} items", "items")
    for n, item in enumerate(req.items):
        if item.sku not in CATALOGUE:
            raise InvalidRequest(f"items[{n}].sku {item.sku!r} is not in the catalogue",
                                 f"items[{n}].sku")
        if not _is_int(item.quantity) or not MIN_QUANTITY <= item.quantity <= MAX_QUANTITY:
            raise InvalidRequest(
                f"items[{n}].quantity must be an integer from {MIN_QUANTITY} to {MAX_QUANTITY}",
                f"items[{n}].quantity",
            )
    return req


def create_from_dict(d: Any) -> CreateOrder:
    """Parse a create request from decoded JSON, turning shape errors into InvalidRequest."""
    if not isinstance(d, dict):
        raise InvalidRequest("the request body must be a JSON object", "body")
    items = d.get("items")
    if not isinstance(items, list):
        raise InvalidRequest("items must be a list of {sku, quantity}", "items")
    parsed: list[ItemRequest] = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidRequest(f"items[{n}] must be an object", f"items[{n}]")
        parsed.append(ItemRequest(sku=item.get("sku"), quantity=item.get("quantity")))  # type: ignore[arg-type]
    return CreateOrder(
        request_id=d.get("request_id"),  # type: ignore[arg-type]
        user_id=d.get("user_id"),  # type: ignore[arg-type]
        items=tuple(parsed),
    )
