"""gRPC server: the OrderService on grpc.aio (uvloop), with the standard health service and
server reflection. Handlers only translate protobuf ⇄ domain calls and domain errors ⇄
status codes; every rule lives in targets.core."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from typing import NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from targets.core.errors import InvalidRequest, NotFound, OrderError
from targets.core.service import OrderService
from targets.grpc import convert
from targets.grpc import orders_pb2 as pb
from targets.grpc import orders_pb2_grpc as pb_grpc
from targets.serving import ServeConfig, ServeError, announce_ready, bind_socket, run_service

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["OrderService"].full_name
STOP_GRACE_S = 2.0  # in-flight calls get this long after SIGTERM; the launcher waits 5 s
_SERVER_OPTIONS = [
    # grpc sets SO_REUSEPORT by default, which lets a second server share a busy port
    # silently; without it a taken port is an error, as for the other transports.
    ("grpc.so_reuseport", 0),
]
_STATUS: dict[type[OrderError], grpc.StatusCode] = {
    NotFound: grpc.StatusCode.NOT_FOUND,
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
}


async def _abort(context: grpc.aio.ServicerContext, exc: OrderError) -> NoReturn:
    code = _STATUS.get(type(exc), grpc.StatusCode.INTERNAL)
    await context.abort(code, exc.message)
    raise AssertionError("unreachable: context.abort raises")


class OrderServicer(pb_grpc.OrderServiceServicer):
    """Method names and signatures come from the generated base class."""

    def __init__(self, service: OrderService) -> None:
        self.service = service

    async def GetOrder(
        self, request: pb.GetOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.Order:
        try:
            return convert.order_to_pb(self.service.get_order(request.order_id))
        except OrderError as exc:
            await _abort(context, exc)

    async def GetUserOrders(
        self, request: pb.GetUserOrdersRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetUserOrdersResponse:
        try:
            if request.HasField("limit"):
                orders = self.service.list_user_orders(request.user_id, request.limit)
            else:  # unset: the core's default, as when REST omits ?limit
                orders = self.service.list_user_orders(request.user_id)
        except OrderError as exc:
            await _abort(context, exc)
        return pb.GetUserOrdersResponse(orders=[convert.order_to_pb(o) for o in orders])

    async def CreateOrder(
        self, request: pb.CreateOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateOrderResponse:
        try:
            order, created = self.service.create_order(convert.create_from_pb(request))
        except OrderError as exc:
            await _abort(context, exc)
        return pb.CreateOrderResponse(order=convert.order_to_pb(order), created=created)

    async def StreamOrderUpdates(
        self, request: pb.StreamOrderUpdatesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.OrderUpdate]:
        try:
            # aclosing: a cancelled call (client gone, server stopping) unregisters the watcher.
            async with contextlib.aclosing(self.service.watch(request.order_id)) as updates:
                async for order in updates:
                    yield convert.update_to_pb(order)
        except OrderError as exc:
            await _abort(context, exc)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_port_free(host: str, port: int) -> None:
    """grpc reports a busy port as a bare RuntimeError; probing first gives the shared
    one-line ServeError. Port 0 cannot be busy."""
    if port:
        bind_socket(host, port).close()


async def _serve(config: ServeConfig, service: OrderService) -> None:
    _check_port_free(config.host, config.port)
    server = grpc.aio.server(options=_SERVER_OPTIONS)
    pb_grpc.add_OrderServiceServicer_to_server(OrderServicer(service), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        port = server.add_insecure_port(_address(config.host, config.port))
    except RuntimeError as exc:  # lost a race for the port, or an unusable host
        raise ServeError(f"cannot listen on {_address(config.host, config.port)}: {exc}") from None
    if port == 0:  # older grpc releases return 0 instead of raising
        raise ServeError(f"cannot listen on {_address(config.host, config.port)}")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    announce_ready("grpc", f"grpc://{_address(config.host, port)}")
    await stop.wait()
    await health_servicer.enter_graceful_shutdown()  # health answers NOT_SERVING while draining
    await server.stop(STOP_GRACE_S)


def serve(config: ServeConfig) -> None:
    """Run until SIGTERM/SIGINT, then stop gracefully (in-flight calls get STOP_GRACE_S)."""
    run_service(config, lambda service: _serve(config, service))
