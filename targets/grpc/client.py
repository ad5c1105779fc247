"""gRPC client on grpc.aio: one channel (one HTTP/2 connection) per client, every call
with the client's timeout as its deadline. Status codes come back as the shared errors:
NOT_FOUND → NotFound, INVALID_ARGUMENT → InvalidRequest, the server's own UNAVAILABLE (a chain
edge's downstream failed) → Unavailable, anything else → TransportError."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc

from targets.api import DEFAULT_TIMEOUT_S
from targets.core.errors import InvalidRequest, NotFound, OrderError, TransportError, Unavailable
from targets.core.model import CreateOrder, Order
from targets.grpc import convert
from targets.grpc import orders_pb2 as pb
from targets.grpc import orders_pb2_grpc as pb_grpc
from targets.grpc.status import error_kind

NOTHING = pb.Nothing()

SCHEME = "grpc://"


def parse_target(url: str) -> str:
    """"grpc://host:port" or "host:port" → the channel target "host:port"."""
    target = url.removeprefix(SCHEME).rstrip("/")
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected grpc://HOST:PORT or HOST:PORT, got {url!r}")
    return target


def error_from_rpc(exc: grpc.aio.AioRpcError) -> OrderError:
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(details)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidRequest(details)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return TransportError("timeout", details or "deadline exceeded")
    if code == grpc.StatusCode.UNAVAILABLE:
        if error_kind(exc) == "unavailable":  # the server's answer: a downstream failed
            return Unavailable(details)
        return TransportError("grpc_unavailable", details)
    return TransportError(f"grpc_{code.name.lower()}", details)


def _unencodable(exc: Exception) -> InvalidRequest:
    """A value protobuf cannot carry (a str id, an int beyond int64) is the caller's error,
    as a server-side validation failure would be on the other transports."""
    return InvalidRequest(f"request cannot be encoded: {exc}")


class GrpcOrderClient:
    transport = "grpc"
    variant = "grpcio"

    def __init__(self, channel: grpc.aio.Channel, timeout: float) -> None:
        self._channel = channel
        self._stub = pb_grpc.OrderServiceStub(channel)
        self.timeout = timeout

    async def get_order(self, order_id: int) -> Order:
        try:
            request = pb.GetOrderRequest(order_id=order_id)
        except (TypeError, ValueError) as exc:
            raise _unencodable(exc) from None
        try:
            reply = await self._stub.GetOrder(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None
        return convert.order_from_pb(reply)

    async def noop(self) -> None:
        try:
            await self._stub.Noop(NOTHING, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None

    async def list_user_orders(self, user_id: int, limit: int = 20) -> list[Order]:
        try:
            request = pb.GetUserOrdersRequest(user_id=user_id, limit=limit)
        except (TypeError, ValueError) as exc:
            raise _unencodable(exc) from None
        try:
            reply = await self._stub.GetUserOrders(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None
        return [convert.order_from_pb(o) for o in reply.orders]

    async def create_order(
        self, req: CreateOrder, on_accepted: Callable[[], None] | None = None
    ) -> Order:
        try:
            request = convert.create_to_pb(req)
        except (TypeError, ValueError) as exc:
            raise _unencodable(exc) from None
        try:
            reply = await self._stub.CreateOrder(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None
        order = convert.order_from_pb(reply.order)
        if on_accepted is not None:
            on_accepted()  # request/response: accepted and completed coincide
        return order

    async def stream_order_updates(
        self, order_id: int, *, timeout: float | None = None
    ) -> AsyncIterator[Order]:
        """gRPC-only extra: the order now, then each status change until a terminal one.
        No deadline by default (a stream lives as long as the order changes)."""
        try:
            request = pb.StreamOrderUpdatesRequest(order_id=order_id)
        except (TypeError, ValueError) as exc:
            raise _unencodable(exc) from None
        call = self._stub.StreamOrderUpdates(request, timeout=timeout)
        try:
            async for update in call:
                yield convert.order_from_pb(update.order)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None
        finally:
            call.cancel()  # no-op once finished; frees the stream when the caller stops early

    async def close(self) -> None:
        await self._channel.close()


async def _await_connected(channel: grpc.aio.Channel, target: str, timeout: float) -> None:
    """Open the HTTP/2 connection now, so the first measured call does not pay for it, and
    fail fast with "refused" when nothing listens (grpc would otherwise keep retrying)."""
    state = channel.get_state(try_to_connect=True)
    async with asyncio.timeout(timeout):
        while state != grpc.ChannelConnectivity.READY:
            if state == grpc.ChannelConnectivity.TRANSIENT_FAILURE:
                raise TransportError("refused", f"cannot connect to {target}")
            if state == grpc.ChannelConnectivity.SHUTDOWN:
                raise TransportError("refused", f"channel to {target} was shut down")
            await channel.wait_for_state_change(state)
            state = channel.get_state(try_to_connect=True)


async def open_channel(url: str, timeout: float,
                       options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """A connected channel to "grpc://host:port" or "host:port" (closed again on failure);
    raises TransportError("refused" or "timeout") when no server answers within `timeout`."""
    target = parse_target(url)
    channel = grpc.aio.insecure_channel(target, options=list(options) or None)
    try:
        await _await_connected(channel, target, timeout)
    except TimeoutError:
        await channel.close()
        raise TransportError("timeout", f"no connection to {target} within {timeout} s") from None
    except BaseException:
        await channel.close()
        raise
    return channel


async def connect(url: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> GrpcOrderClient:
    """Accepts "grpc://host:port" or "host:port"; raises TransportError("refused" or
    "timeout") when no server answers within `timeout`."""
    return GrpcOrderClient(await open_channel(url, timeout), timeout)
