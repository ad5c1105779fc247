"""The OrderClient methods over HTTP, written once: each client library supplies only
`_request` (send, read the body, map its own exceptions) and `close`."""

from __future__ import annotations

from collections.abc import Callable

from targets.core.model import CreateOrder, Order
from targets.rest import wire

JSON_HEADERS = {"content-type": "application/json"}


class RestOrderClient:
    transport = "rest"
    variant = ""

    async def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """Status and body of one exchange; raises TransportError for what never got one."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def get_order(self, order_id: int) -> Order:
        return wire.decode_order(*await self._request("GET", wire.order_path(order_id)))

    async def list_user_orders(self, user_id: int, limit: int = 20) -> list[Order]:
        path = wire.user_orders_path(user_id, limit)
        return wire.decode_orders(*await self._request("GET", path))

    async def noop(self) -> None:
        status, body = await self._request("POST", wire.NOOP_PATH)
        if status != 204:
            raise wire.error_from_response(status, body)

    async def create_order(
        self, req: CreateOrder, on_accepted: Callable[[], None] | None = None
    ) -> Order:
        status, body = await self._request("POST", wire.ORDERS_PATH, wire.encode_create(req))
        order = wire.decode_order(status, body)
        if on_accepted is not None:
            on_accepted()  # request/response: accepted and completed coincide
        return order
