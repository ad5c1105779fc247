"""The order's events and the fold that turns a stream of them into the order's state.

Pure: no I/O, so the live projection, the replay on start and the temporal query all fold
with the same function and cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from targets.core.model import STATUS_CREATED, Order

ORDER_CREATED = "OrderCreated"
STATUS_CHANGED = "StatusChanged"
EVENT_TYPES = (ORDER_CREATED, STATUS_CHANGED)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be appended: the store gives it a position."""

    type: str
    data: dict[str, Any]
    recorded_at_ms: int
    request_id: str | None = None  # OrderCreated only: unique in the log (idempotency)


@dataclass(frozen=True, slots=True)
class Event:
    """An event as stored: `version` is its place in its order's stream (1, 2, …),
    `position` its place in the whole log."""

    position: int
    stream_id: int
    version: int
    type: str
    data: dict[str, Any]
    recorded_at_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {"position": self.position, "order_id": self.stream_id, "version": self.version,
                "type": self.type, "data": self.data, "recorded_at_ms": self.recorded_at_ms}


def order_created(order: Order) -> NewEvent:
    """The first event of a stream: the order as created (its id is the stream id)."""
    data = order.to_dict()
    del data["id"]
    return NewEvent(ORDER_CREATED, data, order.created_at_ms, order.request_id)


def status_changed(status: str, at_ms: int) -> NewEvent:
    return NewEvent(STATUS_CHANGED, {"status": status}, at_ms)


def encode(data: dict[str, Any]) -> str:
    return orjson.dumps(data).decode()


def decode(text: str | bytes) -> dict[str, Any]:
    return orjson.loads(text)  # type: ignore[no-any-return]


def apply(state: Order | None, event: Event) -> Order | None:
    """One event on an order's state (None: the stream has not started)."""
    if event.type == ORDER_CREATED:
        return Order.from_dict({"id": event.stream_id, **event.data})
    if event.type == STATUS_CHANGED and state is not None:
        return replace(state, status=str(event.data["status"]))
    return state  # an unknown type is kept in the log and ignored by this projection


def fold(events: Iterable[Event]) -> tuple[Order | None, int]:
    """The state a stream's events (in version order) produce, and its version."""
    state: Order | None = None
    version = 0
    for event in events:
        state, version = apply(state, event), event.version
    return state, version


def seed_events(order: Order) -> list[NewEvent]:
    """A seeded order as a history: created, then (half a second later, before the next
    seeded order) its seeded status, so seeded data has something for temporal queries."""
    created = order_created(replace(order, status=STATUS_CREATED))
    if order.status == STATUS_CREATED:
        return [created]
    return [created, status_changed(order.status, order.created_at_ms + 500)]
