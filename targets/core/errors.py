"""Typed domain errors: every transport maps these to its own wire form and back."""

from __future__ import annotations


class OrderError(Exception):
    """Base of the errors a caller can get from the order service."""

    kind = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(OrderError):
    """The order (or user's orders) asked for does not exist."""

    kind = "not_found"


class InvalidRequest(OrderError):
    """The request breaks a validation rule; `field` names the offending input."""

    kind = "invalid"

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class TransportError(OrderError):
    """The call did not get a domain answer (timeout, refused, protocol error).

    `kind` is set per instance (timeout, refused, http_500, grpc_unavailable, broker, ...)
    so the recorder can count failures by cause.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Unavailable(TransportError):
    """The service answered, but a service it depends on did not (in time): the order was
    rejected. A transport-level failure by nature, so a TransportError of kind `unavailable`
    (REST 503, gRPC UNAVAILABLE, an error event on the queue)."""

    def __init__(self, message: str) -> None:
        super().__init__("unavailable", message)


DOMAIN_ERRORS: dict[str, type[OrderError]] = {
    NotFound.kind: NotFound,
    InvalidRequest.kind: InvalidRequest,
    "unavailable": Unavailable,
}


def error_from_kind(kind: str, message: str) -> OrderError:
    """Rebuild a domain error received over the wire."""
    cls = DOMAIN_ERRORS.get(kind)
    if cls is None:
        return TransportError(kind, message)
    return cls(message)
