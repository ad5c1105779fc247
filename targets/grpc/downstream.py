"""The chain edge's client for payment and inventory over gRPC: one grpc.aio channel per
service, each call with the hop timeout as its deadline, errors mapped as the project's
client maps them. Channels connect lazily: the edge starts even while a downstream is down,
and such a hop fails (UNAVAILABLE) instead of the start. A call given a deadline (absolute
Unix time, targets/policy/deadline.py) gets the time left as its gRPC deadline."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from targets.core.model import Order
from targets.grpc import flow_pb2 as fpb
from targets.grpc import flow_pb2_grpc as fpb_grpc
from targets.grpc.client import error_from_rpc, parse_target


class GrpcDownstream:
    """targets.flow.edge.Downstream over gRPC."""

    def __init__(self, payment_url: str, inventory_url: str, timeout: float) -> None:
        self._channels = [grpc.aio.insecure_channel(parse_target(url))
                          for url in (payment_url, inventory_url)]
        self._payment = fpb_grpc.PaymentServiceStub(self._channels[0])
        self._inventory = fpb_grpc.InventoryServiceStub(self._channels[1])
        self._timeout = timeout

    async def charge(self, order: Order, deadline: float | None = None) -> str:
        return await self._call(self._payment.Charge, fpb.ChargeRequest(
            order_id=order.id, user_id=order.user_id, amount_cents=order.total_cents), deadline)

    async def refund(self, order: Order, deadline: float | None = None) -> str:
        return await self._call(self._payment.Refund, fpb.OrderRef(order_id=order.id), deadline)

    async def reserve(self, order: Order, deadline: float | None = None) -> str:
        return await self._call(self._inventory.Reserve, fpb.ReserveRequest(
            order_id=order.id,
            items=[fpb.StockLine(sku=i.sku, quantity=i.quantity) for i in order.items]), deadline)

    async def release(self, order: Order, deadline: float | None = None) -> str:
        return await self._call(self._inventory.Release, fpb.OrderRef(order_id=order.id), deadline)

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    async def _call(self, method: Callable[..., Awaitable[Any]], request: Any,
                    deadline: float | None = None) -> str:
        timeout = self._timeout if deadline is None else max(0.0, deadline - time.time())
        try:
            reply = await method(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None
        return str(reply.state)
