"""The write side (commands on the event log) and the queries that read the log itself.

Business rules stay in the core: a create is checked with the core's validation and priced
from its catalogue; lookups go through the core's OrderService over the projected read model.
Only the persistence differs: events appended with optimistic concurrency instead of rows
updated in place.
"""

from __future__ import annotations

import time
from dataclasses import replace

from targets.core.errors import InvalidRequest, NotFound
from targets.core.model import ALL_STATUSES, CATALOGUE, STATUS_CREATED, CreateOrder, Item, Order
from targets.core.seed import SeedSpec, seed_orders
from targets.core.service import OrderService
from targets.core.validation import check_create, check_id
from targets.eventsourced.events import Event, fold, order_created, seed_events, status_changed
from targets.eventsourced.log import ConcurrencyConflict, EventLog, open_log
from targets.eventsourced.metrics import EsMetrics
from targets.eventsourced.outbox import OutboxRelay
from targets.eventsourced.projection import Projector, ReadModel, replay

STATUS_RETRIES = 5  # a status change without an expected version re-reads on a conflict
TIME_MAX_MS = 2**63 - 1


class _Reads:
    """The read model as the core's (async) store interface's read half: lookups answer at
    once from memory, through the core's validation."""

    def __init__(self, model: ReadModel) -> None:
        self._model = model

    async def get(self, order_id: int) -> Order | None:
        return self._model.get(order_id)

    async def list_by_user(self, user_id: int, limit: int) -> list[Order]:
        return self._model.list_by_user(user_id, limit)


class EventSourcedOrders:
    """Commands append to `log` and publish to `projector`; `reads` answers lookups. With a
    `relay`, appends write outbox rows and wake it (targets/eventsourced/outbox.py)."""

    def __init__(self, log: EventLog, model: ReadModel, relay: OutboxRelay | None = None,
                 metrics: EsMetrics | None = None) -> None:
        self.log = log
        self.model = model
        self.reads = OrderService(_Reads(model))  # type: ignore[arg-type]  # the read half
        self.metrics = metrics or EsMetrics()
        self.projector = Projector(model, log, self.metrics)
        self.relay = relay

    @classmethod
    async def open(cls, store: str, seed: SeedSpec | None,
                   broker: tuple[str, str] | None = None) -> EventSourcedOrders:
        """Open the log, seed it when empty, and rebuild the read model from it. `broker`
        (AMQP URL, namespace): publish appended events there through the outbox."""
        log = await open_log(store, outbox=broker is not None)
        try:
            if seed is not None and seed.total and await log.count() == 0:
                await log.seed([(o.id, seed_events(o)) for o in seed_orders(seed)])
            relay = OutboxRelay(log, *broker) if broker is not None else None
            metrics, started = EsMetrics(), time.monotonic_ns()
            model = await replay(log)
            metrics.replayed(model.applied, started)  # the replay on start, timed
            return cls(log, model, relay, metrics)
        except BaseException:
            await log.close()
            raise

    async def close(self) -> None:
        await self.projector.stop()
        if self.relay is not None:
            await self.relay.stop()
        await self.log.close()

    def _appended(self, events: list[Event]) -> None:
        self.projector.publish(events)
        if self.relay is not None:
            self.relay.appended(len(events))

    async def create_order(self, req: CreateOrder) -> tuple[Order, bool]:
        """Append OrderCreated to a new stream. Idempotent on `request_id`: a retry appends
        nothing and returns the first order, as it stands in the log."""
        check_create(req)
        items = tuple(Item(i.sku, i.quantity, CATALOGUE[i.sku]) for i in req.items)
        order = Order(0, req.user_id, items, sum(i.quantity * i.unit_price_cents for i in items),
                      STATUS_CREATED, time.time_ns() // 1_000_000, req.request_id)
        started = time.perf_counter_ns()
        stream_id, event = await self.log.create_stream(order_created(order))
        if event is None:
            first, _ = fold(await self.log.read_stream(stream_id))
            assert first is not None
            return first, False
        self.metrics.appended(time.perf_counter_ns() - started)
        self._appended([event])
        return replace(order, id=stream_id), True

    async def change_status(self, order_id: int, status: str,
                            expected_version: int | None = None) -> tuple[Order, int]:
        """Append StatusChanged. With `expected_version`, a stream that moved on is refused
        (ConcurrencyConflict); without, a conflict re-reads and retries a few times."""
        check_id(order_id, "order_id")
        if status not in ALL_STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(ALL_STATUSES)}", "status")
        for _ in range(STATUS_RETRIES):
            events = await self.log.read_stream(order_id)
            state, version = fold(events)
            if state is None:
                raise NotFound(f"order {order_id} does not exist")
            if expected_version is not None and expected_version != version:
                raise ConcurrencyConflict(order_id, expected_version, version)
            # each event of a stream is recorded strictly after the one before, whatever the
            # clock does, so a time names one state of the order
            at = max(time.time_ns() // 1_000_000, events[-1].recorded_at_ms + 1)
            try:
                stored = await self.log.append(order_id, version, [status_changed(status, at)])
            except ConcurrencyConflict:
                if expected_version is not None:
                    raise
                continue
            self._appended(stored)
            return replace(state, status=status), stored[-1].version
        raise ConcurrencyConflict(order_id, version, None)

    async def order_at(self, order_id: int, at_ms: int) -> Order:
        """The order as it stood at `at_ms` (Unix ms), folded from the log alone."""
        check_id(order_id, "order_id")
        if not 0 <= at_ms <= TIME_MAX_MS:
            raise InvalidRequest("at_ms must be a time in Unix milliseconds", "at_ms")
        state, _ = fold(await self.log.read_stream(order_id, until_ms=at_ms))
        if state is None:
            raise NotFound(f"order {order_id} did not exist at {at_ms}")
        return state

    async def history(self, order_id: int) -> list[Event]:
        """Every event of an order (its audit trail), oldest first."""
        check_id(order_id, "order_id")
        events = await self.log.read_stream(order_id)
        if not events:
            raise NotFound(f"order {order_id} does not exist")
        return events
