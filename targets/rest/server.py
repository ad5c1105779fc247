"""REST server: FastAPI on uvicorn (uvloop, httptools), one process, access log off.

Routes only translate HTTP ⇄ OrderService calls. The pydantic body model checks JSON types
and shape (strict: no "5" for 5); every business rule stays in the core. Responses are
built with orjson and returned as Response objects, so FastAPI does its routing, parameter
parsing and body validation but no second serialization pass.

`/openapi.json` is the contract outside tools see. The wire models below exist for it: the
value ranges they declare are schema-only (`json_schema_extra`), built from the core's
constants, because the core enforces them and words the error; a pydantic `ge`/`le` would
validate twice and answer in pydantic's words instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal

import orjson
import uvicorn
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from targets.core.errors import InvalidRequest, NotFound
from targets.core.model import CATALOGUE, STATUSES, CreateOrder, ItemRequest
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
from targets.rest import wire
from targets.serving import ServeConfig, announce_ready, bind_socket, run_service

GRACEFUL_SHUTDOWN_S = 3


class OrjsonResponse(JSONResponse):
    """orjson-rendered JSON. A JSONResponse subclass because FastAPI documents a route's
    response_model only for those (otherwise every 200 reads `{"type": "string"}`);
    Response.__init__ directly, skipping JSONResponse's pass-through frame on the hot path."""

    __init__ = Response.__init__  # type: ignore[assignment]

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


# --- wire models: request parsing and the OpenAPI schema ---------------------------------

def _schema(**keywords: Any) -> Any:
    """A schema-only constraint: documented in /openapi.json, enforced by the core."""
    return Field(json_schema_extra=keywords)


SKUS = sorted(CATALOGUE)
# 1..ID_MAX as `exclusiveMaximum: 2**63`: FastAPI's OpenAPI model stores bounds as floats,
# which would round a `maximum` of 2**63-1 up to 2**63; 2**63 itself is exact as a float.
_ID_RANGE: dict[str, Any] = {"format": "int64", "minimum": 1, "exclusiveMaximum": ID_MAX + 1}
Id = Annotated[int, _schema(**_ID_RANGE)]
Sku = Annotated[str, _schema(enum=SKUS)]
Quantity = Annotated[int, _schema(minimum=MIN_QUANTITY, maximum=MAX_QUANTITY)]
Cents = Annotated[int, _schema(minimum=0)]
_OUT = ConfigDict(extra="forbid")  # documentation only: `additionalProperties: false`


class ItemIn(BaseModel):
    model_config = ConfigDict(strict=True)
    sku: Sku
    quantity: Quantity


class CreateOrderIn(BaseModel):
    model_config = ConfigDict(strict=True)
    request_id: Annotated[str, _schema(minLength=1, maxLength=MAX_REQUEST_ID)]
    user_id: Id
    items: Annotated[list[ItemIn], _schema(minItems=MIN_ITEMS, maxItems=MAX_ITEMS)]


class ItemOut(BaseModel):
    model_config = _OUT
    sku: Sku
    quantity: Quantity
    unit_price_cents: Cents


class OrderOut(BaseModel):
    model_config = _OUT
    id: Id
    user_id: Id
    items: Annotated[list[ItemOut], _schema(minItems=MIN_ITEMS, maxItems=MAX_ITEMS)]
    total_cents: Cents
    status: Annotated[str, _schema(enum=list(STATUSES))]
    created_at_ms: Annotated[int, _schema(minimum=0)]  # Unix epoch, milliseconds


class OrderListOut(BaseModel):
    model_config = _OUT
    orders: Annotated[list[OrderOut], _schema(maxItems=MAX_LIST_LIMIT)]  # newest first


class NotFoundDetail(BaseModel):
    model_config = _OUT
    kind: Literal["not_found"]
    message: Annotated[str, _schema(minLength=1)]
    field: Literal[""]


class NotFoundOut(BaseModel):
    model_config = _OUT
    error: NotFoundDetail


class InvalidDetail(BaseModel):
    model_config = _OUT
    kind: Literal["invalid"]
    message: Annotated[str, _schema(minLength=1)]
    field: str = Field(description='the offending input ("order_id", "limit", "items[0].sku", '
                                   '…); "body" when the body as a whole is wrong')


class InvalidOut(BaseModel):
    model_config = _OUT
    error: InvalidDetail


class HealthOut(BaseModel):
    model_config = _OUT
    status: Literal["ok"]


_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": NotFoundOut, "description": "no such order"},
}
_INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": InvalidOut, "description": "invalid request: a parameter or the body "
                                             "breaks a rule, or the body is not JSON"},
}


# --- error mapping ------------------------------------------------------------------------

def _error(status: int, kind: str, message: str, field: str = "") -> OrjsonResponse:
    return OrjsonResponse(wire.error_body(kind, message, field), status_code=status)


def _field_name(loc: tuple[Any, ...]) -> str:
    """("body", "items", 0, "sku") → "items[0].sku", the core's naming; ("path", "order_id")
    → "order_id"; the whole body (not an object, not JSON at offset n) → "body"."""
    parts = loc[1:] if loc and loc[0] in ("body", "path", "query", "header") else loc
    if not parts or isinstance(parts[0], int):
        return "body" if loc and loc[0] == "body" else ""
    name = str(parts[0])
    for p in parts[1:]:
        name += f"[{p}]" if isinstance(p, int) else f".{p}"
    return name


async def _on_not_found(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NotFound)
    return _error(404, NotFound.kind, exc.message)


async def _on_invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidRequest)
    return _error(422, InvalidRequest.kind, exc.message, exc.field)


async def _on_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    field = _field_name(tuple(first.get("loc", ())))
    msg = "the request body is not valid JSON" if first.get("type") == "json_invalid" \
        else str(first.get("msg", "invalid input"))
    return _error(422, InvalidRequest.kind, f"{field}: {msg}" if field else msg, field)


async def _on_http(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (unknown route, wrong method, unparsable body) in our shape."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return _error(404, NotFound.kind, f"no route for {request.method} {request.url.path}")
    if exc.status_code == 400:  # FastAPI could not decode the body (e.g. not UTF-8)
        return _error(422, InvalidRequest.kind, "the request body is not valid JSON", "body")
    resp = _error(exc.status_code, InvalidRequest.kind, str(exc.detail))
    resp.headers.update(exc.headers or {})
    return resp


# --- the app --------------------------------------------------------------------------------

def build_app(service: OrderService) -> FastAPI:
    """The ASGI app over `service`; usable in-process (e.g. httpx.ASGITransport)."""
    app = FastAPI(
        title="commbench orders",
        version="1",
        default_response_class=OrjsonResponse,
        exception_handlers={
            NotFound: _on_not_found,
            InvalidRequest: _on_invalid,
            RequestValidationError: _on_validation,
            StarletteHTTPException: _on_http,
        },
    )

    @app.get(wire.ORDER_PATH, response_model=OrderOut, response_description="the order",
             responses={**_NOT_FOUND, **_INVALID})
    async def get_order(
        order_id: Annotated[int, Path(json_schema_extra=_ID_RANGE)],
    ) -> Response:
        return OrjsonResponse(service.get_order(order_id).to_dict())

    @app.get(wire.USER_ORDERS_PATH, response_model=OrderListOut,
             response_description="the user's orders, newest first (none: an empty list)",
             responses=_INVALID)
    async def list_user_orders(
        user_id: Annotated[int, Path(json_schema_extra=_ID_RANGE)],
        limit: Annotated[int, Query(json_schema_extra={"minimum": 1, "maximum": MAX_LIST_LIMIT})]
        = DEFAULT_LIST_LIMIT,
    ) -> Response:
        orders = service.list_user_orders(user_id, limit)
        return OrjsonResponse({"orders": [o.to_dict() for o in orders]})

    @app.post(wire.ORDERS_PATH, response_model=OrderOut, status_code=201,
              response_description="the order, created by this request",
              responses={200: {"model": OrderOut, "description": "a retried request id: "
                               "the order its first attempt created"}, **_INVALID})
    async def create_order(body: CreateOrderIn) -> Response:
        req = CreateOrder(
            request_id=body.request_id,
            user_id=body.user_id,
            items=tuple(ItemRequest(i.sku, i.quantity) for i in body.items),
        )
        order, is_new = service.create_order(req)
        return OrjsonResponse(order.to_dict(), status_code=201 if is_new else 200)

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


def serve(config: ServeConfig) -> None:
    sock = bind_socket(config.host, config.port)  # ServeError: port in use

    async def main(service: OrderService) -> None:
        uv_config = uvicorn.Config(
            build_app(service),
            loop="uvloop",
            http="httptools",
            access_log=False,
            workers=1,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        url = _url(config.host, sock)
        await _run(_Server(uv_config, lambda: announce_ready("rest", url)), sock)

    try:
        run_service(config, main)
    finally:
        sock.close()
