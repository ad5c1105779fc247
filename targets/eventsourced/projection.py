"""The read side: a read model of orders that lookups query, and the projector that keeps it
up to date from the log's events.

The projector runs in the server process as its own task: a command appends, hands the
stored events to the projector's queue and returns; the projector applies them when it next
runs. Lookups read the model as it stands, so a lookup can trail the log (the read model is
eventually consistent). Events of one stream are applied in version order even when they
arrive out of order (two commands finishing in another order than they appended); on start
the model is rebuilt from the whole log, with the same fold.

The projector can be crashed and restarted at run time (the `projector` fault): a crash
drops its task and every event handed to it and not yet applied, as a crashed process would;
a restart catches up by reading the log from its start before it takes new events, and the
model's versions drop whatever it holds already, so nothing is lost and nothing applied twice.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import Callable, Iterable

from targets.core.model import Order
from targets.eventsourced.events import Event, apply
from targets.eventsourced.log import EventLog
from targets.eventsourced.metrics import EsMetrics


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
        self.duplicates = 0  # events dropped because they were applied already
        self.last_position = 0
        self.on_applied: Callable[[Event], None] | None = None  # the live projection's hook

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
            self.duplicates += 1
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
        if self.on_applied is not None:
            self.on_applied(event)

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
    """Applies appended events to `model` on its own task (start/stop it with the server).

    `metrics` gets each event's projection lag: from `publish` (the append has committed) to
    the moment the event is applied, however it got there (the live queue or a catch-up)."""

    def __init__(self, model: ReadModel, log: EventLog | None = None,
                 metrics: EsMetrics | None = None) -> None:
        self.model = model
        self.log = log
        self.metrics = metrics or EsMetrics()
        self._queue: asyncio.Queue[list[Event]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.appended = model.applied  # events handed over so far (replayed ones included)
        self.running = False
        self.crashes = 0
        self._committed: dict[int, int] = {}  # position → monotonic ns of its publish
        model.on_applied = self._applied

    def publish(self, events: Iterable[Event]) -> None:
        """Hand appended events over; returns at once (the projector applies them later).
        While the projector is down they are not queued: its restart reads them from the log."""
        batch = list(events)
        now = time.monotonic_ns()
        for event in batch:
            self._committed[event.position] = now
        self.appended += len(batch)
        if self.running:
            self._queue.put_nowait(batch)

    def _applied(self, event: Event) -> None:
        published = self._committed.pop(event.position, None)
        if published is not None:
            self.metrics.projected(time.monotonic_ns() - published)

    def start(self, catch_up: bool = False) -> None:
        """Run the projector; `catch_up`: first read the whole log (a restart after a crash)."""
        if self.running:
            return
        self.running = True
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run(catch_up),
                                                            name="projector")

    async def stop(self) -> None:
        """Stop the task and drop every event queued to it (a crash loses them)."""
        self.running = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._queue = asyncio.Queue()

    async def crash(self) -> None:
        """The projector fault: stopped as a crash stops it, and counted."""
        await self.stop()
        self.crashes += 1

    @property
    def lag(self) -> int:
        """Events appended but not yet applied."""
        return self.appended - self.model.applied

    def behind_ns(self) -> int:
        """The age of the oldest event appended and not yet applied (0: none): how far the
        read model trails the log. Publish order is the dict's order, so the first is it."""
        oldest = next(iter(self._committed.values()), None)
        return 0 if oldest is None else time.monotonic_ns() - oldest

    async def _run(self, catch_up: bool) -> None:
        if catch_up and self.log is not None:
            async for batch in self.log.read_all():
                for event in batch:
                    self.model.apply(event)
                await asyncio.sleep(0)  # a batch at a time: the server keeps answering
        while True:
            for event in await self._queue.get():
                self.model.apply(event)


async def check_against_log(model: ReadModel, log: EventLog) -> dict[str, object]:
    """The read model against a fresh replay of the log: orders missing from the model,
    orders in it the log does not have, orders that differ (state or version), and the
    events the model counts as applied against those in the log. Equal and applied ==
    events means no event was lost and none applied twice."""
    fresh = await replay(log)
    live, truth = model.snapshot(), fresh.snapshot()
    missing = [oid for oid in truth if oid not in live]
    extra = [oid for oid in live if oid not in truth]
    different = [oid for oid in truth if oid in live and live[oid] != truth[oid]]
    events = fresh.applied
    return {"events_in_log": events, "applied": model.applied,
            "duplicates_dropped": model.duplicates, "orders": len(truth),
            "missing": len(missing), "extra": len(extra), "different": len(different),
            "examples": (missing + extra + different)[:5],
            "consistent": not (missing or extra or different) and model.applied == events}
