"""The outbox relay: publishes the log's pending outbox rows on RabbitMQ, so other consumers
see every appended event (an event is published if and only if it was appended).

The log writes an outbox row in the transaction that appends its event (log.py); this task,
in the server process, reads the oldest pending rows, publishes each as a persistent message
on the namespace's topic exchange `<ns>.events` with publisher confirms, and removes a row
only after the broker confirmed its message. A crash between the confirm and the removal
publishes that event again on restart: delivery is at least once, and every message carries
the event's position in the log (its id) as `message_id`, so a consumer dedupes on it.
Rows go out oldest first on one channel, so an order's events arrive in version order,
except after a failed publish, when a later version may overtake the retried one: a
consumer that cares orders them by `version` (a header, and in the body).

The relay never blocks a command: appends commit whether or not the broker answers; while it
is away the rows wait (the backlog, a control-channel gauge) and the relay retries. Commands
wake it after each commit (an in-process event, no polling); on start it publishes whatever
an earlier process left pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from targets.control import GAUGES
from targets.eventsourced.events import Event
from targets.eventsourced.log import EventLog
from targets.redact import redact

BATCH = 256  # rows read, published and removed at a time
RETRY_S = 0.5  # the pause before reconnecting to a broker that failed
PUBLISH_TIMEOUT_S = 5.0  # a confirm that does not come in time counts as a failure
CONNECT_TIMEOUT_S = 3.0
STOP_TIMEOUT_S = 3.0  # how long a stopping server lets the current batch finish
ROUTING_PREFIX = "eventsourced"  # routing key: eventsourced.<event type>; bind eventsourced.#
BACKLOG_GAUGE = "outbox_backlog"  # control channel gauge: rows not yet published

log = logging.getLogger("commbench.outbox")


def exchange_name(namespace: str) -> str:
    """The namespace's event exchange: the queue target declares the same one (topic,
    durable), so the stage's namespace clean-up removes it for either target."""
    return f"{namespace}.events"


def routing_key(event: Event) -> str:
    return f"{ROUTING_PREFIX}.{event.type}"


class OutboxRelay:
    """Start with `start()` once the log is open; `appended(n)` after each commit."""

    def __init__(self, log_: EventLog, amqp_url: str, namespace: str) -> None:
        self._log = log_
        self._url = amqp_url
        self._exchange_name = exchange_name(namespace)
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._connection: Any = None
        self._exchange: Any = None
        self.published = 0  # messages confirmed by the broker since start
        # Rows appended and not yet confirmed, counted without a read of the log. It may dip
        # below 0 for a moment: the relay can read and publish a committed row before the
        # command that committed it has called `appended` (a clamp at 0 lost that decrement,
        # and left a backlog of 1 that never drained, once, on PostgreSQL).
        self._count = 0

    @property
    def backlog(self) -> int:
        return max(0, self._count)

    def _counted(self, delta: int) -> None:
        self._count += delta
        GAUGES[BACKLOG_GAUGE] = self.backlog

    async def start(self) -> None:
        self._counted(await self._log.backlog())
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    def appended(self, n: int) -> None:
        """`n` events (and their outbox rows) were just committed."""
        self._counted(n)
        self._wake.set()

    async def stop(self) -> None:
        """Let the batch in flight finish (bounded), then close; what is left stays pending
        in the log for the next start."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), STOP_TIMEOUT_S)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        await self._disconnect()

    async def _run(self) -> None:
        failing = False
        while not self._stopping:
            self._wake.clear()  # before reading: a commit after the read wakes us again
            try:
                rows = await self._log.pending(BATCH)
                if rows:
                    await self._publish(rows)
                    if failing:
                        log.warning("outbox: publishing again on %s", redact(self._url))
                        failing = False
                    continue
            except Exception as exc:  # broker away or refusing: the rows stay pending
                if not failing:
                    log.warning("outbox: cannot publish on %s (%s: %s); the rows wait, "
                                "retrying every %.1f s", redact(self._url), type(exc).__name__,
                                exc, RETRY_S)
                    failing = True
                await self._disconnect()
                with contextlib.suppress(TimeoutError):  # a stop cuts the pause short
                    await asyncio.wait_for(self._stopped(), RETRY_S)
                continue
            await self._wake.wait()

    async def _stopped(self) -> None:
        while not self._stopping:
            self._wake.clear()
            await self._wake.wait()

    async def _publish(self, rows: list[Event]) -> None:
        """Publish `rows` (in position order, on one channel), then remove the confirmed
        ones; raise if any was not confirmed."""
        import aio_pika

        exchange = await self._connect()
        messages = [(e, aio_pika.Message(
            _body(e), message_id=str(e.position), content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT, type=e.type,
            headers={"order_id": e.stream_id, "version": e.version})) for e in rows]
        # not mandatory: an event no consumer has bound to is published all the same
        results = await asyncio.gather(
            *(exchange.publish(m, routing_key(e), mandatory=False, timeout=PUBLISH_TIMEOUT_S)
              for e, m in messages), return_exceptions=True)
        confirmed = [e.position for e, r in zip(rows, results, strict=True)
                     if not isinstance(r, BaseException)]
        if confirmed:
            await self._log.mark_published(confirmed)
            self.published += len(confirmed)
            self._counted(-len(confirmed))
        failed = next((r for r in results if isinstance(r, BaseException)), None)
        if failed is not None:
            raise failed

    async def _connect(self) -> Any:
        import aio_pika

        if self._connection is None or self._connection.is_closed:
            await self._disconnect()
            self._connection = await aio_pika.connect(self._url, timeout=CONNECT_TIMEOUT_S)
            channel = await self._connection.channel(publisher_confirms=True)
            self._exchange = await channel.declare_exchange(
                self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        return self._exchange

    async def _disconnect(self) -> None:
        connection, self._connection, self._exchange = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


def _body(event: Event) -> bytes:
    import orjson

    return orjson.dumps(event.to_dict())
