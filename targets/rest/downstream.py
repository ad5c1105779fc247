"""The chain edge's client for payment and inventory over REST: the project's default REST
client (aiohttp, one keep-alive pool per service), so a hop costs what a client call costs
and fails with the same error kinds."""

from __future__ import annotations

from targets.core.model import Order
from targets.rest import flow_wire
from targets.rest.client_aiohttp import AiohttpOrderClient


class RestDownstream:
    """targets.flow.edge.Downstream over HTTP/JSON."""

    def __init__(self, payment_url: str, inventory_url: str, timeout: float) -> None:
        self._payment = AiohttpOrderClient(payment_url, timeout)
        self._inventory = AiohttpOrderClient(inventory_url, timeout)

    async def charge(self, order: Order) -> str:
        return await self._call(self._payment, flow_wire.charge_path(order.id), flow_wire.charge_body(order))

    async def refund(self, order: Order) -> str:
        return await self._call(self._payment, flow_wire.refund_path(order.id))

    async def reserve(self, order: Order) -> str:
        return await self._call(self._inventory, flow_wire.reserve_path(order.id),
                                flow_wire.reserve_body(order))

    async def release(self, order: Order) -> str:
        return await self._call(self._inventory, flow_wire.release_path(order.id))

    async def close(self) -> None:
        await self._payment.close()
        await self._inventory.close()

    @staticmethod
    async def _call(client: AiohttpOrderClient, path: str, body: bytes | None = None) -> str:
        return flow_wire.decode_state(*await client._request("POST", path, body))
