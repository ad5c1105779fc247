"""What every REST app of the project shares (the order service and the flow's payment and
inventory services): orjson responses and the mapping of errors to our JSON error body."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from targets.control import InjectedFault
from targets.core.errors import InvalidRequest, NotFound, Unavailable
from targets.policy.deadline import DeadlineExpired
from targets.rest import wire


class OrjsonResponse(JSONResponse):
    """orjson-rendered JSON. A JSONResponse subclass because FastAPI documents a route's
    response_model only for those (otherwise every 200 reads `{"type": "string"}`);
    Response.__init__ directly, skipping JSONResponse's pass-through frame on the hot path."""

    __init__ = Response.__init__  # type: ignore[assignment]

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def schema_only(**keywords: Any) -> Any:
    """A schema-only constraint: documented in /openapi.json, enforced by the core."""
    return Field(json_schema_extra=keywords)


OUT = ConfigDict(extra="forbid")  # documentation only: `additionalProperties: false`


class NotFoundDetail(BaseModel):
    model_config = OUT
    kind: Literal["not_found"]
    message: Annotated[str, schema_only(minLength=1)]
    field: Literal[""]


class NotFoundOut(BaseModel):
    model_config = OUT
    error: NotFoundDetail


class InvalidDetail(BaseModel):
    model_config = OUT
    kind: Literal["invalid"]
    message: Annotated[str, schema_only(minLength=1)]
    field: str = Field(description='the offending input ("order_id", "limit", "items[0].sku", '
                                   '…); "body" when the body as a whole is wrong')


class InvalidOut(BaseModel):
    model_config = OUT
    error: InvalidDetail


class UnavailableDetail(BaseModel):
    model_config = OUT
    kind: Literal["unavailable"]
    message: Annotated[str, schema_only(minLength=1)]
    field: Literal[""]


class UnavailableOut(BaseModel):
    model_config = OUT
    error: UnavailableDetail


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": NotFoundOut, "description": "no such order"},
}
INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": InvalidOut, "description": "invalid request: a parameter or the body "
                                             "breaks a rule, or the body is not JSON"},
}
ERRORS: dict[int | str, dict[str, Any]] = {**NOT_FOUND, **INVALID}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": UnavailableOut, "description": "a downstream service failed or timed "
          "out: the order was rejected"},
}


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


async def _on_unavailable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Unavailable)
    return _error(wire.UNAVAILABLE_STATUS, exc.kind, exc.message)


async def _on_injected(request: Request, exc: Exception) -> Response:
    """A fault the control channel injected: the 500 any failing handler would answer, in
    our error body (kind `injected`), so a caller can tell it from a crash."""
    assert isinstance(exc, InjectedFault)
    return _error(500, exc.kind, exc.message)


async def _on_deadline(request: Request, exc: Exception) -> Response:
    """Work dropped because the caller's deadline had passed (targets/policy/deadline.py)."""
    assert isinstance(exc, DeadlineExpired)
    return _error(504, exc.kind, exc.message)


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


EXCEPTION_HANDLERS: dict[Any, Any] = {
    NotFound: _on_not_found,
    InvalidRequest: _on_invalid,
    Unavailable: _on_unavailable,
    InjectedFault: _on_injected,
    DeadlineExpired: _on_deadline,
    RequestValidationError: _on_validation,
    StarletteHTTPException: _on_http,
}
