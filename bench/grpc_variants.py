"""Other arrangements of the gRPC client, measured against the default one by
`python -m bench.grpc_clients` (issue 11): same calls, same answers, same error mapping as
targets.grpc.client, only the plumbing differs.

- `connect_pool(url, channels=N)`: N grpc.aio channels (N HTTP/2 connections), calls
  round-robin, to see whether one connection's stream handling limits a client;
- `connect_sync_future(url)`: the sync channel and stub, each call `.future()` bridged to
  the event loop by a done-callback (grpc's own threads complete it);
- `connect_options(url, options=…)`: the default client on a channel with other options.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc

from targets.api import DEFAULT_TIMEOUT_S
from targets.core.errors import TransportError
from targets.core.model import CreateOrder, Order
from targets.grpc import convert
from targets.grpc import orders_pb2 as pb
from targets.grpc import orders_pb2_grpc as pb_grpc
from targets.grpc.client import (
    GrpcOrderClient,
    _unencodable,
    connect,
    error_from_rpc,
    open_channel,
    parse_target,
)

# Channel options that skip work a loopback benchmark does not need: the retry buffer, BDP
# pings, the HTTP proxy lookup.
LEAN_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.enable_retries", 0), ("grpc.http2.bdp_probe", 0), ("grpc.enable_http_proxy", 0),
)


async def connect_options(url: str, *, timeout: float = DEFAULT_TIMEOUT_S,
                          options: Sequence[tuple[str, Any]] = LEAN_OPTIONS) -> GrpcOrderClient:
    """The default client on a channel created with `options`."""
    client = GrpcOrderClient(await open_channel(url, timeout, options), timeout)
    client.variant = "grpcio-options"
    return client


class GrpcPoolClient:
    """Round-robin over several default clients (one channel each)."""

    transport = "grpc"

    def __init__(self, clients: list[GrpcOrderClient]) -> None:
        self._clients = clients
        self._next = itertools.cycle(clients).__next__
        self.timeout = clients[0].timeout
        self.variant = f"grpcio-{len(clients)}ch"

    async def get_order(self, order_id: int) -> Order:
        return await self._next().get_order(order_id)

    async def noop(self) -> None:
        await self._next().noop()

    async def list_user_orders(self, user_id: int, limit: int = 20) -> list[Order]:
        return await self._next().list_user_orders(user_id, limit)

    async def create_order(self, req: CreateOrder,
                           on_accepted: Callable[[], None] | None = None) -> Order:
        return await self._next().create_order(req, on_accepted)

    def stream_order_updates(self, order_id: int, *,
                             timeout: float | None = None) -> AsyncIterator[Order]:
        return self._next().stream_order_updates(order_id, timeout=timeout)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._clients))


async def connect_pool(url: str, *, timeout: float = DEFAULT_TIMEOUT_S,
                       channels: int = 2) -> GrpcPoolClient:
    clients: list[GrpcOrderClient] = []
    try:
        for _ in range(channels):
            # a channel per client: grpc.aio shares a subchannel between channels of equal
            # target and options unless told not to
            clients.append(await connect_options(
                url, timeout=timeout,
                options=[("grpc.use_local_subchannel_pool", 1)]))
    except BaseException:
        await asyncio.gather(*(c.close() for c in clients))
        raise
    return GrpcPoolClient(clients)


class GrpcSyncFutureClient:
    """The sync stub's `.future()` calls, completed on the event loop."""

    transport = "grpc"
    variant = "grpcio-sync-future"

    def __init__(self, channel: grpc.Channel, timeout: float) -> None:
        self._channel = channel
        self._stub = pb_grpc.OrderServiceStub(channel)
        self._loop = asyncio.get_running_loop()
        self.timeout = timeout

    async def _call(self, method: Any, request: Any) -> Any:
        loop = self._loop
        done: asyncio.Future[Any] = loop.create_future()

        def finished(call: grpc.Future) -> None:
            loop.call_soon_threadsafe(_settle, done, call)

        method.future(request, timeout=self.timeout).add_done_callback(finished)
        return await done

    async def get_order(self, order_id: int) -> Order:
        try:
            request = pb.GetOrderRequest(order_id=order_id)
        except (TypeError, ValueError) as exc:
            raise _unencodable(exc) from None
        return convert.order_from_pb(await self._call(self._stub.GetOrder, request))

    async def noop(self) -> None:
        await self._call(self._stub.Noop, pb.Nothing())

    async def list_user_orders(self, user_id: int, limit: int = 20) -> list[Order]:
        try:
            request = pb.GetUserOrdersRequest(user_id=user_id, limit=limit)
        except (TypeError, ValueError) as exc:
            raise _unencodable(exc) from None
        reply = await self._call(self._stub.GetUserOrders, request)
        return [convert.order_from_pb(o) for o in reply.orders]

    async def create_order(self, req: CreateOrder,
                           on_accepted: Callable[[], None] | None = None) -> Order:
        try:
            request = convert.create_to_pb(req)
        except (TypeError, ValueError) as exc:
            raise _unencodable(exc) from None
        order = convert.order_from_pb((await self._call(self._stub.CreateOrder, request)).order)
        if on_accepted is not None:
            on_accepted()
        return order

    async def close(self) -> None:
        self._channel.close()


def _settle(done: asyncio.Future[Any], call: grpc.Future) -> None:
    if done.cancelled():
        return
    try:
        done.set_result(call.result())
    except grpc.RpcError as exc:
        done.set_exception(error_from_rpc(exc))  # type: ignore[arg-type]
    except grpc.FutureCancelledError:
        done.cancel()


async def connect_sync_future(url: str, *,
                              timeout: float = DEFAULT_TIMEOUT_S) -> GrpcSyncFutureClient:
    target = parse_target(url)
    channel = grpc.insecure_channel(target)
    ready = grpc.channel_ready_future(channel)
    try:
        await asyncio.wait_for(asyncio.wrap_future(_as_concurrent(ready)), timeout)
    except TimeoutError:
        channel.close()
        raise TransportError("timeout", f"no connection to {target} within {timeout} s") from None
    return GrpcSyncFutureClient(channel, timeout)


def _as_concurrent(f: grpc.Future) -> Any:
    import concurrent.futures

    out: concurrent.futures.Future[None] = concurrent.futures.Future()
    f.add_done_callback(lambda g: out.set_result(None) if g.exception() is None
                        else out.set_exception(g.exception()))  # type: ignore[arg-type]
    return out


__all__ = ["connect", "connect_options", "connect_pool", "connect_sync_future"]
