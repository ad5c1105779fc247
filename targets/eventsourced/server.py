"""The eventsourced target's server: the REST app of targets/rest (same routes, same JSON,
same uvicorn settings) over the event-sourced order service, plus the routes only this
pattern has (the order at a time, its events, a status change with an expected version,
the projection's state). The wire is REST so a comparison with `rest` isolates the pattern.
"""

from __future__ import annotations

import socket
import sqlite3
from typing import Annotated

from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from targets.control import FaultSwitch, controlled
from targets.core.validation import ID_MAX
from targets.eventsourced import wire
from targets.eventsourced.controls import register as register_controls
from targets.eventsourced.log import ConcurrencyConflict
from targets.eventsourced.service import EventSourcedOrders
from targets.redact import redact
from targets.registry import get_transport
from targets.rest import wire as rest_wire
from targets.rest.responses import OrjsonResponse
from targets.rest.server import _run, _Server, _url, build_app  # the REST target's serving
from targets.serving import (
    ServeConfig,
    ServeError,
    announce_ready,
    bind_socket,
    check_role,
    run_on_uvloop,
)

TRANSPORT = "eventsourced"
_ID = {"format": "int64", "minimum": 1, "exclusiveMaximum": ID_MAX + 1}


class StatusIn(BaseModel):
    model_config = ConfigDict(strict=True)
    status: str
    expected_version: int | None = None


def build_es_app(orders: EventSourcedOrders, faults: FaultSwitch | None = None) -> FastAPI:
    """The REST app over the read model, commands on the log, and this pattern's routes."""
    faults = faults or FaultSwitch()
    app = build_app(orders.reads, orders.create_order, faults)  # type: ignore[arg-type]

    async def on_conflict(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConcurrencyConflict)
        return OrjsonResponse(rest_wire.error_body(wire.CONFLICT_KIND, str(exc)),
                              status_code=wire.CONFLICT_STATUS)

    app.add_exception_handler(ConcurrencyConflict, on_conflict)

    @app.get(wire.ORDER_AT_PATH, response_description="the order as it stood at at_ms")
    async def order_at(order_id: Annotated[int, Path(json_schema_extra=_ID)],
                       at_ms: Annotated[int, Query(json_schema_extra={"minimum": 0})]) -> Response:
        if faults.active:
            await faults.before()
        return OrjsonResponse((await orders.order_at(order_id, at_ms)).to_dict())

    @app.get(wire.ORDER_EVENTS_PATH, response_description="the order's events, oldest first")
    async def order_events(order_id: Annotated[int, Path(json_schema_extra=_ID)]) -> Response:
        return OrjsonResponse({"events": [e.to_dict() for e in await orders.history(order_id)]})

    @app.post(wire.ORDER_STATUS_PATH, response_description="the order and its new version; "
              "409 when expected_version is not the order's version")
    async def change_status(order_id: Annotated[int, Path(json_schema_extra=_ID)],
                            body: StatusIn) -> Response:
        order, version = await orders.change_status(order_id, body.status, body.expected_version)
        return OrjsonResponse({"order": order.to_dict(), "version": version})

    @app.get(wire.PROJECTION_PATH, response_description="the read model's progress")
    async def projection() -> Response:
        p = orders.projector
        return OrjsonResponse({"appended": p.appended, "applied": orders.model.applied,
                               "lag": p.lag, "orders": orders.model.count()})

    return app


async def _main(config: ServeConfig, sock: socket.socket) -> None:
    import asyncpg
    import uvicorn

    try:
        # an empty broker URL (serve --amqp-url '') serves without the outbox
        broker = (config.amqp_url, config.namespace) if config.amqp_url else None
        orders = await EventSourcedOrders.open(config.store, config.seed, broker)
    except (OSError, sqlite3.Error, asyncpg.PostgresError) as exc:  # a log we cannot use
        raise ServeError(f"cannot open the event log {redact(config.store)}: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    try:
        orders.projector.start()
        if orders.relay is not None:
            await orders.relay.start()
        if config.control:
            register_controls(orders)
        faults = FaultSwitch()
        app = build_es_app(orders, faults)
        uv_config = uvicorn.Config(app, loop="uvloop", http="httptools", access_log=False,
                                   workers=1, timeout_graceful_shutdown=3)
        url = _url(config.host, sock)
        async with controlled(config.control, faults):
            await _run(_Server(uv_config, lambda: announce_ready(TRANSPORT, url, config.role)),
                       sock)
    finally:
        await orders.close()


def serve(config: ServeConfig) -> None:
    """Run the order service until SIGTERM/SIGINT (the single topology only)."""
    check_role(config, TRANSPORT, get_transport(TRANSPORT).roles)
    if config.topology != "single":
        raise ServeError(f"{TRANSPORT} serves the single topology only")
    sock = bind_socket(config.host, config.port)
    try:
        run_on_uvloop(_main(config, sock))
    finally:
        sock.close()
