"""REST server: FastAPI on uvicorn (uvloop, httptools), one process, access log off.

Routes only translate HTTP ⇄ OrderService calls. The pydantic body model checks JSON types
and shape (strict: no "5" for 5); every business rule stays in the core. Responses are
built with orjson and returned as Response objects, so FastAPI does its routing, parameter
parsing and body validation but no second serialization pass.

`/openapi.json` is the contract outside tools see. The wire models below exist for it: the
value ranges they declare are schema-only (`json_schema_extra`), built from the core's
constants, because the core enforces them and words the error; a pydantic `ge`/`le` would
validate twice and answer in pydantic's words instead.

`serve` runs one role: the order service (alone, or as the edge of a chain that charges and
reserves through the payment and inventory services over aiohttp), or one of those two.
With `--policies` (a chain edge), its hops run under the resilience policies
(targets/policy/) and uvicorn sheds past the policies' concurrency limit.
With `--control`, every business route first awaits the fault switch while a fault is on
(targets/control.py); an injected error answers 500 with the JSON error body.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import FastAPI, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from targets.control import FaultSwitch, controlled
from targets.core.model import ALL_STATUSES, CATALOGUE, CreateOrder, ItemRequest, Order
from targets.core.service import DEFAULT_LIST_LIMIT, OrderService
from targets.core.validation import (
    ID_MAX,
    MAX_ITEMS,
    MAX_LIST_LIMIT,
    MAX_QUANTITY,
    MAX_REQUEST_ID,
    MIN_ITEMS,
    MIN_QUANTITY,
)
from targets.flow.edge import ChainEdge
from targets.flow.inventory import Inventory
from targets.flow.payment import Payments
from targets.policy.wiring import edge_downstream, edge_limit
from targets.registry import get_transport
from targets.rest import wire
from targets.rest.downstream import RestDownstream
from targets.rest.flow_apps import build_inventory_app, build_payment_app
from targets.rest.responses import (
    ERRORS,
    EXCEPTION_HANDLERS,
    INVALID,
    OUT,
    UNAVAILABLE,
    OrjsonResponse,
    schema_only,
)
from targets.rest.shedding import count_sheds
from targets.serving import (
    ROLE_INVENTORY,
    ROLE_ORDER,
    ROLE_PAYMENT,
    TOPOLOGY_CHAIN,
    ServeConfig,
    announce_ready,
    bind_socket,
    check_role,
    run_on_uvloop,
    run_service,
)

GRACEFUL_SHUTDOWN_S = 3
Create = Callable[[CreateOrder], Awaitable[tuple[Order, bool]]]


# --- wire models: request parsing and the OpenAPI schema ---------------------------------

SKUS = sorted(CATALOGUE)
# 1..ID_MAX as `exclusiveMaximum: 2**63`: FastAPI's OpenAPI model stores bounds as floats,
# which would round a `maximum` of 2**63-1 up to 2**63; 2**63 itself is exact as a float.
_ID_RANGE: dict[str, Any] = {"format": "int64", "minimum": 1, "exclusiveMaximum": ID_MAX + 1}
Id = Annotated[int, schema_only(**_ID_RANGE)]
Sku = Annotated[str, schema_only(enum=SKUS)]
Quantity = Annotated[int, schema_only(minimum=MIN_QUANTITY, maximum=MAX_QUANTITY)]
Cents = Annotated[int, schema_only(minimum=0)]


class ItemIn(BaseModel):
    model_config = ConfigDict(strict=True)
    sku: Sku
    quantity: Quantity


class CreateOrderIn(BaseModel):
    model_config = ConfigDict(strict=True)
    request_id: Annotated[str, schema_only(minLength=1, maxLength=MAX_REQUEST_ID)]
    user_id: Id
    items: Annotated[list[ItemIn], schema_only(minItems=MIN_ITEMS, maxItems=MAX_ITEMS)]


class ItemOut(BaseModel):
    model_config = OUT
    sku: Sku
    quantity: Quantity
    unit_price_cents: Cents


class OrderOut(BaseModel):
    model_config = OUT
    id: Id
    user_id: Id
    items: Annotated[list[ItemOut], schema_only(minItems=MIN_ITEMS, maxItems=MAX_ITEMS)]
    total_cents: Cents
    status: Annotated[str, schema_only(enum=list(ALL_STATUSES))]
    created_at_ms: Annotated[int, schema_only(minimum=0)]  # Unix epoch, milliseconds


class OrderListOut(BaseModel):
    model_config = OUT
    orders: Annotated[list[OrderOut], schema_only(maxItems=MAX_LIST_LIMIT)]  # newest first


class HealthOut(BaseModel):
    model_config = OUT
    status: Literal["ok"]


# --- the app --------------------------------------------------------------------------------

def build_app(service: OrderService, create: Create | None = None,
              faults: FaultSwitch | None = None) -> FastAPI:
    """The ASGI app over `service`; usable in-process (e.g. httpx.ASGITransport). `create`,
    when given, replaces the service's own create (a chain edge's, which awaits downstreams);
    `faults`, the switch its routes obey (off unless a control channel sets it)."""
    faults = faults or FaultSwitch()
    app = FastAPI(
        title="commbench orders",
        version="1",
        default_response_class=OrjsonResponse,
        exception_handlers=EXCEPTION_HANDLERS,
    )

    @app.get(wire.ORDER_PATH, response_model=OrderOut, response_description="the order",
             responses=ERRORS)
    async def get_order(
        order_id: Annotated[int, Path(json_schema_extra=_ID_RANGE)],
    ) -> Response:
        if faults.active:
            await faults.before()
        return OrjsonResponse((await service.get_order(order_id)).to_dict())

    @app.get(wire.USER_ORDERS_PATH, response_model=OrderListOut,
             response_description="the user's orders, newest first (none: an empty list)",
             responses=INVALID)
    async def list_user_orders(
        user_id: Annotated[int, Path(json_schema_extra=_ID_RANGE)],
        limit: Annotated[int, Query(json_schema_extra={"minimum": 1, "maximum": MAX_LIST_LIMIT})]
        = DEFAULT_LIST_LIMIT,
    ) -> Response:
        if faults.active:
            await faults.before()
        orders = await service.list_user_orders(user_id, limit)
        return OrjsonResponse({"orders": [o.to_dict() for o in orders]})

    @app.post(wire.ORDERS_PATH, response_model=OrderOut, status_code=201,
              response_description="the order, created by this request",
              responses={200: {"model": OrderOut, "description": "a retried request id: "
                               "the order its first attempt created"}, **INVALID, **UNAVAILABLE})
    async def create_order(body: CreateOrderIn) -> Response:
        if faults.active:
            await faults.before()
        req = CreateOrder(
            request_id=body.request_id,
            user_id=body.user_id,
            items=tuple(ItemRequest(i.sku, i.quantity) for i in body.items),
        )
        order, is_new = await (service.create_order(req) if create is None else create(req))
        return OrjsonResponse(order.to_dict(), status_code=201 if is_new else 200)

    @app.post(wire.NOOP_PATH, status_code=204, response_description="nothing: the floor")
    async def noop() -> Response:
        return Response(status_code=204)

    @app.get(wire.HEALTH_PATH, response_model=HealthOut, response_description="serving")
    async def healthz() -> Response:
        return OrjsonResponse({"status": "ok"})

    return app


# --- serving ----------------------------------------------------------------------------------

class _Server(uvicorn.Server):
    """uvicorn's Server, announcing readiness once it listens and leaving signals to us."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn would use signal.signal and re-raise the signal after shutdown; we install
        # loop handlers instead, so SIGTERM ends in a clean return (exit code 0).
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_started()


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def _run(server: _Server, sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.handle_exit, sig, None)
    await server.serve(sockets=[sock])


async def _serve_app(app: FastAPI, config: ServeConfig, sock: socket.socket,
                     faults: FaultSwitch, limit: int | None = None) -> None:
    """`limit`: uvicorn's limit_concurrency (edge shedding: 503 past it, counted)."""
    if limit is not None:
        count_sheds()
    uv_config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        access_log=False,
        workers=1,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        limit_concurrency=limit,
    )
    url = _url(config.host, sock)
    async with controlled(config.control, faults):  # up before the ready line
        await _run(_Server(uv_config, lambda: announce_ready("rest", url, config.role)), sock)


async def _serve_order(config: ServeConfig, service: OrderService, sock: socket.socket) -> None:
    faults = FaultSwitch()
    if config.topology != TOPOLOGY_CHAIN:
        await _serve_app(build_app(service, faults=faults), config, sock, faults)
        return
    downstream, hop_limit_s = edge_downstream(config.policies, config.hop_timeout_s, lambda t: (
        RestDownstream(config.downstream(ROLE_PAYMENT), config.downstream(ROLE_INVENTORY), t)))
    try:
        edge = ChainEdge(service, downstream, hop_limit_s)
        await _serve_app(build_app(service, edge.create_order, faults), config, sock, faults,
                         edge_limit(config.policies))
    finally:
        await downstream.close()


def serve(config: ServeConfig) -> None:
    """Run `config.role` until SIGTERM/SIGINT."""
    check_role(config, "rest", get_transport("rest").roles)
    if config.role == ROLE_ORDER and config.topology == TOPOLOGY_CHAIN:
        for role in (ROLE_PAYMENT, ROLE_INVENTORY):
            config.downstream(role)  # a missing URL is a one-line ServeError before we bind
    sock = bind_socket(config.host, config.port)  # ServeError: port in use
    try:
        if config.role == ROLE_ORDER:
            run_service(config, lambda service: _serve_order(config, service, sock))
        elif config.role == ROLE_PAYMENT:
            payments = Payments.open(config.store, config.seed)
            faults = FaultSwitch()
            try:
                run_on_uvloop(_serve_app(build_payment_app(payments, faults), config, sock, faults))
            finally:
                payments.close()
        elif config.role == ROLE_INVENTORY:
            inventory = Inventory.open(config.store, config.seed)
            faults = FaultSwitch()
            try:
                run_on_uvloop(_serve_app(build_inventory_app(inventory, faults), config, sock,
                                         faults))
            finally:
                inventory.close()
    finally:
        sock.close()
