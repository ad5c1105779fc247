"""The chain edge's client for payment and inventory over REST: the project's default REST
client (aiohttp, one keep-alive pool per service), so a hop costs what a client call costs
and fails with the same error kinds. A call given a deadline carries it in the
`x-commbench-deadline` header (targets/policy/deadline.py)."""

from __future__ import annotations

from targets.core.model import Order
from targets.policy import deadline as deadlines
from targets.rest import flow_wire
from targets.rest.client_aiohttp import AiohttpOrderClient


class RestDownstream:
    """targets.flow.edge.Downstream over HTTP/JSON."""

    def __init__(self, payment_url: str, inventory_url: str, timeout: float) -> None:
        self._payment = AiohttpOrderClient(payment_url, timeout)
        self._inventory = AiohttpOrderClient(inventory_url, timeout)

    async def charge(self, order: Order, deadline: float | None = None) -> str:
        return await self._call(self._payment, flow_wire.charge_path(order.id), deadline,
                                flow_wire.charge_body(order))

    async def refund(self, order: Order, deadline: float | None = None) -> str:
        return await self._call(self._payment, flow_wire.refund_path(order.id), deadline)

    async def reserve(self, order: Order, deadline: float | None = None) -> str:
        return await self._call(self._inventory, flow_wire.reserve_path(order.id), deadline,
                                flow_wire.reserve_body(order))

    async def release(self, order: Order, deadline: float | None = None) -> str:
        return await self._call(self._inventory, flow_wire.release_path(order.id), deadline)

    async def close(self) -> None:
        await self._payment.close()
        await self._inventory.close()

    @staticmethod
    async def _call(client: AiohttpOrderClient, path: str, deadline: float | None,
                    body: bytes | None = None) -> str:
        extra = {deadlines.HEADER: deadlines.header_value(deadline)} if deadline else None
        return flow_wire.decode_state(*await client._request("POST", path, body, extra))
