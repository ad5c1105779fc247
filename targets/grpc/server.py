"""gRPC server: the OrderService on grpc.aio (uvloop), with the standard health service and
server reflection. Handlers only translate protobuf ⇄ domain calls and domain errors ⇄
status codes; every rule lives in targets.core (and targets.flow).

`serve` runs one role: the order service (alone, or as the edge of a chain that charges and
reserves through the payment and inventory services over grpc.aio), or one of those two.

Request bytes that are not a valid protobuf message get INVALID_ARGUMENT, like any other bad
input. grpc.aio deserializes before the method runs and turns a deserializer's exception into
UNKNOWN, so the order service's methods are registered with deserializers that hand them an
`Undecodable` instead of raising, and each method refuses that first thing.

With `--policies` (a chain edge), its hops run under the resilience policies
(targets/policy/) and the server sheds past the policies' concurrency limit.

With `--control`, every servicer method (order, payment, inventory) then awaits the fault
switch while a fault is on (targets/control.py); an injected error aborts INTERNAL with the
detail "fault injected by the control channel" (trailing metadata kind `injected`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NoReturn

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from targets.control import FaultSwitch, controlled
from targets.core.errors import OrderError
from targets.core.model import CreateOrder, Order
from targets.core.service import OrderService
from targets.flow.edge import ChainEdge
from targets.flow.inventory import Inventory
from targets.flow.payment import Payments
from targets.grpc import convert
from targets.grpc import flow_pb2_grpc as fpb_grpc
from targets.grpc import orders_pb2 as pb
from targets.grpc import orders_pb2_grpc as pb_grpc
from targets.grpc.downstream import GrpcDownstream
from targets.grpc.flow_servicers import (
    INVENTORY_SERVICE,
    PAYMENT_SERVICE,
    InventoryServicer,
    PaymentServicer,
)
from targets.grpc.status import abort as _abort
from targets.policy.wiring import edge_downstream, edge_limit
from targets.registry import get_transport
from targets.serving import (
    ROLE_INVENTORY,
    ROLE_PAYMENT,
    TOPOLOGY_CHAIN,
    ServeConfig,
    ServeError,
    announce_ready,
    bind_socket,
    check_role,
    run_on_uvloop,
    run_service,
)

_SERVICE = pb.DESCRIPTOR.services_by_name["OrderService"]
SERVICE_NAME: str = _SERVICE.full_name
STOP_GRACE_S = 2.0  # in-flight calls get this long after SIGTERM; the launcher waits 5 s
_SERVER_OPTIONS = [
    # grpc sets SO_REUSEPORT by default, which lets a second server share a busy port
    # silently; without it a taken port is an error, as for the other transports.
    ("grpc.so_reuseport", 0),
]
Create = Callable[[CreateOrder], Awaitable[tuple[Order, bool]]]
Register = Callable[[grpc.aio.Server], str]  # adds a role's servicer, returns its service name


class Undecodable:
    """What a method receives in place of request bytes protobuf could not parse."""

    __slots__ = ("detail",)

    def __init__(self, detail: str) -> None:
        self.detail = detail


async def _refuse(context: grpc.aio.ServicerContext, request: Undecodable) -> NoReturn:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.detail)
    raise AssertionError("unreachable: context.abort raises")


def _lenient(message: type[Message]) -> Callable[[bytes], Message | Undecodable]:
    """`message.FromString`, returning an Undecodable instead of raising DecodeError (the
    try costs nothing on a valid request)."""
    from_string = message.FromString

    def deserialize(data: bytes) -> Message | Undecodable:
        try:
            return from_string(data)
        except DecodeError as exc:
            return Undecodable(f"undecodable request: {exc}")

    return deserialize


NOTHING = pb.Nothing()


class OrderServicer(pb_grpc.OrderServiceServicer):
    """Method names and signatures come from the generated base class. `create`, when given,
    replaces the service's own create (a chain edge's, which awaits downstreams)."""

    def __init__(self, service: OrderService, create: Create | None = None,
                 faults: FaultSwitch | None = None) -> None:
        self.service = service
        self._create = create
        self.faults = faults or FaultSwitch()

    async def GetOrder(
        self, request: pb.GetOrderRequest | Undecodable, context: grpc.aio.ServicerContext
    ) -> pb.Order:
        if isinstance(request, Undecodable):
            await _refuse(context, request)
        try:
            if self.faults.active:
                await self.faults.before()
            return convert.order_to_pb(await self.service.get_order(request.order_id))
        except OrderError as exc:
            await _abort(context, exc)

    async def Noop(self, request: pb.Nothing | Undecodable,
                   context: grpc.aio.ServicerContext) -> pb.Nothing:
        if isinstance(request, Undecodable):
            await _refuse(context, request)
        return NOTHING

    async def GetUserOrders(
        self, request: pb.GetUserOrdersRequest | Undecodable, context: grpc.aio.ServicerContext
    ) -> pb.GetUserOrdersResponse:
        if isinstance(request, Undecodable):
            await _refuse(context, request)
        try:
            if self.faults.active:
                await self.faults.before()
            if request.HasField("limit"):
                orders = await self.service.list_user_orders(request.user_id, request.limit)
            else:  # unset: the core's default, as when REST omits ?limit
                orders = await self.service.list_user_orders(request.user_id)
        except OrderError as exc:
            await _abort(context, exc)
        return pb.GetUserOrdersResponse(orders=[convert.order_to_pb(o) for o in orders])

    async def CreateOrder(
        self, request: pb.CreateOrderRequest | Undecodable, context: grpc.aio.ServicerContext
    ) -> pb.CreateOrderResponse:
        if isinstance(request, Undecodable):
            await _refuse(context, request)
        try:
            if self.faults.active:
                await self.faults.before()
            req = convert.create_from_pb(request)
            order, created = await (self.service.create_order(req) if self._create is None
                                    else self._create(req))
        except OrderError as exc:
            await _abort(context, exc)
        return pb.CreateOrderResponse(order=convert.order_to_pb(order), created=created)

    async def StreamOrderUpdates(
        self, request: pb.StreamOrderUpdatesRequest | Undecodable,
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.OrderUpdate]:
        if isinstance(request, Undecodable):
            await _refuse(context, request)
        try:
            if self.faults.active:
                await self.faults.before()
            # aclosing: a cancelled call (client gone, server stopping) unregisters the watcher.
            async with contextlib.aclosing(self.service.watch(request.order_id)) as updates:
                async for order in updates:
                    yield convert.update_to_pb(order)
        except OrderError as exc:
            await _abort(context, exc)


def add_to_server(servicer: OrderServicer, server: grpc.aio.Server) -> None:
    """What the generated `add_OrderServiceServicer_to_server` does, with lenient request
    deserializers; the table comes from the proto's descriptor, so it cannot miss a method."""
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for method in _SERVICE.methods:
        assert not method.client_streaming, f"{method.name}: client streaming is not wired up"
        make: Callable[..., grpc.RpcMethodHandler] = (
            grpc.unary_stream_rpc_method_handler if method.server_streaming
            else grpc.unary_unary_rpc_method_handler)
        handlers[method.name] = make(
            getattr(servicer, method.name),
            request_deserializer=_lenient(getattr(pb, method.input_type.name)),
            response_serializer=getattr(pb, method.output_type.name).SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_port_free(host: str, port: int) -> None:
    """grpc reports a busy port as a bare RuntimeError; probing first gives the shared
    one-line ServeError. Port 0 cannot be busy."""
    if port:
        bind_socket(host, port).close()


async def _serve(config: ServeConfig, register: Register, faults: FaultSwitch,
                 limit: int | None = None) -> None:
    async with controlled(config.control, faults):  # up before the ready line
        await _serve_grpc(config, register, limit)


async def _serve_grpc(config: ServeConfig, register: Register, limit: int | None = None) -> None:
    """`limit`: grpc's maximum_concurrent_rpcs (edge shedding: RESOURCE_EXHAUSTED past it)."""
    _check_port_free(config.host, config.port)
    server = grpc.aio.server(options=_SERVER_OPTIONS, maximum_concurrent_rpcs=limit)
    service_name = register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (service_name, health.SERVICE_NAME, reflection.SERVICE_NAME), server
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
    for name in ("", service_name):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    announce_ready("grpc", f"grpc://{_address(config.host, port)}", config.role)
    await stop.wait()
    await health_servicer.enter_graceful_shutdown()  # health answers NOT_SERVING while draining
    await server.stop(STOP_GRACE_S)


async def _serve_order(config: ServeConfig, service: OrderService) -> None:
    faults = FaultSwitch()
    downstream = None
    create: Create | None = None
    if config.topology == TOPOLOGY_CHAIN:
        downstream, hop_limit_s = edge_downstream(
            config.policies, config.hop_timeout_s, lambda t: GrpcDownstream(
                config.downstream(ROLE_PAYMENT), config.downstream(ROLE_INVENTORY), t))
        create = ChainEdge(service, downstream, hop_limit_s).create_order

    def register(server: grpc.aio.Server) -> str:
        add_to_server(OrderServicer(service, create, faults), server)
        return SERVICE_NAME

    try:
        await _serve(config, register, faults, edge_limit(config.policies))
    finally:
        if downstream is not None:
            await downstream.close()


def _serve_payment(config: ServeConfig) -> None:
    payments = Payments.open(config.store, config.seed)
    faults = FaultSwitch()

    def register(server: grpc.aio.Server) -> str:
        fpb_grpc.add_PaymentServiceServicer_to_server(PaymentServicer(payments, faults), server)
        return PAYMENT_SERVICE

    try:
        run_on_uvloop(_serve(config, register, faults))
    finally:
        payments.close()


def _serve_inventory(config: ServeConfig) -> None:
    inventory = Inventory.open(config.store, config.seed)
    faults = FaultSwitch()

    def register(server: grpc.aio.Server) -> str:
        fpb_grpc.add_InventoryServiceServicer_to_server(InventoryServicer(inventory, faults), server)
        return INVENTORY_SERVICE

    try:
        run_on_uvloop(_serve(config, register, faults))
    finally:
        inventory.close()


def serve(config: ServeConfig) -> None:
    """Run `config.role` until SIGTERM/SIGINT, then stop gracefully (in-flight calls get
    STOP_GRACE_S)."""
    check_role(config, "grpc", get_transport("grpc").roles)
    if config.role == ROLE_PAYMENT:
        _serve_payment(config)
    elif config.role == ROLE_INVENTORY:
        _serve_inventory(config)
    else:
        if config.topology == TOPOLOGY_CHAIN:
            for role in (ROLE_PAYMENT, ROLE_INVENTORY):
                config.downstream(role)  # a missing URL is a one-line ServeError up front
        run_service(config, lambda service: _serve_order(config, service))
