"""The eventsourced target's clients: the REST clients (aiohttp, httpx) unchanged, plus the
calls only this pattern answers (the order at a time, a status change with an expected
version, the projection's state)."""

from __future__ import annotations

from typing import Any

from targets.api import DEFAULT_TIMEOUT_S
from targets.core.model import Order
from targets.eventsourced import wire
from targets.rest.client_aiohttp import AiohttpOrderClient
from targets.rest.client_base import RestOrderClient
from targets.rest.client_httpx import HttpxOrderClient


class EventSourcedCalls(RestOrderClient):
    transport = "eventsourced"

    async def order_at(self, order_id: int, at_ms: int) -> Order:
        """The order as it stood at `at_ms` (Unix ms); NotFound when it did not exist yet."""
        return wire.decode_order(*await self._request("GET", wire.order_at_path(order_id, at_ms)))

    async def change_status(self, order_id: int, status: str,
                            expected_version: int | None = None) -> tuple[Order, int]:
        """TransportError of kind `conflict` when `expected_version` is stale."""
        path = wire.ORDER_STATUS_PATH.format(order_id=order_id)
        got = wire.decode_json(*await self._request(
            "POST", path, wire.status_body(status, expected_version)))
        return Order.from_dict(got["order"]), int(got["version"])

    async def events(self, order_id: int) -> list[dict[str, Any]]:
        path = wire.ORDER_EVENTS_PATH.format(order_id=order_id)
        return list(wire.decode_json(*await self._request("GET", path))["events"])

    async def projection(self) -> dict[str, int]:
        return dict(wire.decode_json(*await self._request("GET", wire.PROJECTION_PATH)))


class AiohttpClient(EventSourcedCalls, AiohttpOrderClient):
    pass


class HttpxClient(EventSourcedCalls, HttpxOrderClient):
    pass


async def connect(url: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> AiohttpClient:
    return AiohttpClient(url, timeout)


async def connect_httpx(url: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> HttpxClient:
    return HttpxClient(url, timeout)
