"""Domain errors ⇄ gRPC status codes, for every servicer and the client.

A rejected order (Unavailable) goes out as UNAVAILABLE, like a server that cannot be
reached; trailing metadata tells the two apart, so the client maps ours to the error kind
`unavailable` and leaves a real connection failure `grpc_unavailable`."""

from __future__ import annotations

from typing import NoReturn

import grpc

from targets.core.errors import InvalidRequest, NotFound, OrderError, Unavailable
from targets.policy.deadline import DeadlineExpired

ERROR_KIND_KEY = "commbench-error-kind"
_STATUS: dict[type[OrderError], grpc.StatusCode] = {
    NotFound: grpc.StatusCode.NOT_FOUND,
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    DeadlineExpired: grpc.StatusCode.DEADLINE_EXCEEDED,
}


async def abort(context: grpc.aio.ServicerContext, exc: OrderError) -> NoReturn:
    code = _STATUS.get(type(exc), grpc.StatusCode.INTERNAL)
    await context.abort(code, exc.message, trailing_metadata=((ERROR_KIND_KEY, exc.kind),))
    raise AssertionError("unreachable: context.abort raises")


def error_kind(exc: grpc.aio.AioRpcError) -> str:
    """The domain error kind the server attached, or "" (not ours: a channel failure)."""
    for key, value in exc.trailing_metadata() or ():
        if key == ERROR_KIND_KEY:
            return value if isinstance(value, str) else value.decode(errors="replace")
    return ""
