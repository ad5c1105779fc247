"""The one client interface. The load engine, the conformance suite and the locust users
drive every transport through it and nothing else, so a figure never depends on which
harness path produced it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from targets.core.model import CreateOrder, Order

DEFAULT_TIMEOUT_S = 10.0


class OrderClient(Protocol):
    transport: str  # registry name, e.g. "rest"
    variant: str  # client library, e.g. "aiohttp"; a row of its own in results

    async def get_order(self, order_id: int) -> Order:
        """Raises NotFound, InvalidRequest or TransportError."""
        ...

    async def list_user_orders(self, user_id: int, limit: int = 20) -> list[Order]: ...

    async def create_order(
        self, req: CreateOrder, on_accepted: Callable[[], None] | None = None
    ) -> Order:
        """Returns once the order is durably created (the *completed* moment).

        `on_accepted` is called the moment the transport has taken responsibility for the
        request: the broker's publisher confirm for the queue; for request/response
        transports it coincides with completion and is called just before returning.
        """
        ...

    async def noop(self) -> None:
        """An empty request, an empty answer: the transport's own floor (framing, parsing,
        one hop), with no order logic, so a report can tell the two apart."""
        ...

    async def close(self) -> None: ...


class TemporalClient(OrderClient, Protocol):
    """A client of a transport whose registry entry says `temporal_query`: it keeps every
    state an order went through and answers for any moment."""

    async def order_at(self, order_id: int, at_ms: int) -> Order:
        """The order as it stood at `at_ms` (Unix ms); NotFound when it did not exist yet."""
        ...

    async def change_status(self, order_id: int, status: str,
                            expected_version: int | None = None) -> tuple[Order, int]:
        """Move the order to `status`; the order and its new version."""
        ...


class ClientFactory(Protocol):
    async def __call__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> OrderClient: ...
