"""The read side: a read model of orders that lookups query, and the projector that keeps it
up to date from the log's events.

The projector runs in the server process as its own task: a command appends, hands the
stored events to the projector's queue and returns; the projector applies them when it next
runs. Lookups read the model as it stands, so a lookup can trail the log (the read model is
eventually consistent). Events of one stream are applied in version order even when they
arrive out of order (two commands finishing in another order than they appended); on start
the model is rebuilt from the whole log, with the same fold.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import Iterable

from targets.core.model import Order
from targets.eventsourced.events import Event, apply
from targets.eventsourced.log import EventLog


class ReadModel:
    """Orders by id and by user (ids ascending), with their stream versions. It has the
    read half of the core's Store interface, so the core's OrderService serves lookups from
    it with the core's validation."""

    def __init__(self) -> None:
        self.orders: dict[int, Order] = {}
        self.versions: dict[int, int] = {}
        self._by_user: dict[int, list[int]] = {}
        self._waiting: dict[int, dict[int, Event]] = {}  # stream → version → early event
        self.applied = 0  # events applied (a replay and the live projection count alike)
        self.last_position = 0

    # -- the Store interface's read half ------------------------------------------------------

    def get(self, order_id: int) -> Order | None:
        return self.orders.get(order_id)

    def list_by_user(self, user_id: int, limit: int) -> list[Order]:
        ids = self._by_user.get(user_id, [])
        return [self.orders[i] for i in reversed(ids[-limit:])]

    def count(self) -> int:
        return len(self.orders)

    def close(self) -> None:
        pass

    # -- projecting ------------------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Apply `event` if it is its stream's next version; hold it if it is early; drop it
        if it was applied already (so a replayed or repeated event is never applied twice)."""
        current = self.versions.get(event.stream_id, 0)
        if event.version <= current:
            return
        if event.version > current + 1:
            self._waiting.setdefault(event.stream_id, {})[event.version] = event
            return
        self._apply_now(event)
        waiting = self._waiting.get(event.stream_id)
        while waiting:
            nxt = waiting.pop(self.versions[event.stream_id] + 1, None)
            if nxt is None:
                break
            self._apply_now(nxt)
        if waiting is not None and not waiting:
            del self._waiting[event.stream_id]

    def _apply_now(self, event: Event) -> None:
        before = self.orders.get(event.stream_id)
        after = apply(before, event)
        if after is not None:
            self.orders[event.stream_id] = after
            if before is None:
                bisect.insort(self._by_user.setdefault(after.user_id, []), after.id)
        self.versions[event.stream_id] = event.version
        self.applied += 1
        self.last_position = max(self.last_position, event.position)

    def snapshot(self) -> dict[int, dict[str, object]]:
        """Every order with its version, for comparing two models."""
        return {oid: {**o.to_dict(), "version": self.versions[oid]}
                for oid, o in sorted(self.orders.items())}


async def replay(log: EventLog) -> ReadModel:
    """A read model built from the whole log (what a server does on start)."""
    model = ReadModel()
    async for batch in log.read_all():
        for event in batch:
            model.apply(event)
    return model


class Projector:
    """Applies appended events to `model` on its own task (start/stop it with the server)."""

    def __init__(self, model: ReadModel) -> None:
        self.model = model
        self._queue: asyncio.Queue[list[Event]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.appended = model.applied  # events handed over so far (replayed ones included)

    def publish(self, events: Iterable[Event]) -> None:
        """Hand appended events over; returns at once (the projector applies them later)."""
        batch = list(events)
        self.appended += len(batch)
        self._queue.put_nowait(batch)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="projector")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def lag(self) -> int:
        """Events appended but not yet applied."""
        return self.appended - self.model.applied

    async def _run(self) -> None:
        while True:
            for event in await self._queue.get():
                self.model.apply(event)
