"""The eventsourced target's outbox on real processes, a real RabbitMQ and real databases
(a SQLite file, PostgreSQL): every appended event reaches a consumer bound to the
namespace's exchange exactly once after dedupe, and events appended while the broker was
unreachable are published when the server comes back. Each test works in a namespace and a
database of its own, both removed afterwards."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import orjson
import pytest

from harness.stage.broker import delete_namespace
from harness.stage.control import query_gauges
from harness.stage.launcher import Launcher
from targets.control import GAUGES
from targets.core.model import STATUS_PAID, STATUS_SHIPPED, CreateOrder, ItemRequest
from targets.core.seed import SeedSpec, seed_orders
from targets.eventsourced.client import connect
from targets.eventsourced.events import order_created, seed_events
from targets.eventsourced.log import open_log
from targets.eventsourced.outbox import BACKLOG_GAUGE, ROUTING_PREFIX, OutboxRelay, exchange_name
from targets.serving import ServeConfig
from tests.conftest import run
from tests.procs import wait_until
from tests.test_asyncapi import _channel_of, _documented_message, _properties

pytestmark = pytest.mark.broker

SEED = SeedSpec(users=5, orders_per_user=4, seed=7)
SEEDED_EVENTS = sum(len(seed_events(o)) for o in seed_orders(SEED))  # positions 1..this
ORDERS = 60
CATCH_UP_S = 20.0  # deadline for the relay to publish the backlog


@pytest.fixture
def ns(amqp_url: str) -> Iterator[str]:
    """A fresh namespace; its exchange is deleted after the test."""
    name = f"cbtest-outbox-{uuid.uuid4().hex[:8]}"
    yield name
    assert delete_namespace(amqp_url, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'events.sqlite'}"
    return str(request.getfixturevalue("pg_store"))


class Consumer:
    """A queue of the test's own, bound to every eventsourced event of the namespace before
    the server starts, so nothing published can miss it."""

    def __init__(self, amqp_url: str, ns: str) -> None:
        self.url, self.ns = amqp_url, ns
        self.queue_name = f"{ns}.test-consumer"
        self.documented: set[tuple[str, str]] = set()  # (asyncapi channel, message) drained

    def bind(self) -> None:
        async def body() -> None:
            connection = await aio_pika.connect(self.url)
            async with connection:
                channel = await connection.channel()
                exchange = await channel.declare_exchange(
                    exchange_name(self.ns), aio_pika.ExchangeType.TOPIC, durable=True)
                queue = await channel.declare_queue(self.queue_name, auto_delete=False)
                await queue.bind(exchange, routing_key=f"{ROUTING_PREFIX}.#")

        run(body())

    def drain(self) -> list[tuple[int, dict[str, object]]]:
        """Every message in the queue now: (message_id, body), then the queue is deleted.
        Called once every published row is confirmed, so all of them are in it."""
        async def body() -> list[tuple[int, dict[str, object]]]:
            connection = await aio_pika.connect(self.url)
            out = []
            async with connection:
                channel = await connection.channel()
                queue = await channel.declare_queue(self.queue_name, passive=True)
                while (message := await queue.get(no_ack=True, fail=False)) is not None:
                    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
                    body = orjson.loads(message.body)
                    out.append((int(message.message_id or 0), body))
                    # docs/asyncapi.yaml: the channel it travels on, the message it fits
                    where = _channel_of(message.exchange or "", message.routing_key or "",
                                        {"namespace": self.ns, "eventType": message.type or ""})
                    self.documented.add((where, _documented_message(
                        where, _properties(message), body)))
                await channel.queue_delete(self.queue_name)
            return out

        return list(run(body()))


async def _load(url: str, tag: str) -> int:
    """Creates and status changes, concurrently; the number of events they appended."""
    client = await connect(url)
    try:
        made = await asyncio.gather(*(
            client.create_order(CreateOrder(f"{tag}-{n}", n % 5 + 1,
                                            (ItemRequest("SKU-001", n % 3 + 1),)))
            for n in range(ORDERS)))
        paid = await asyncio.gather(*(client.change_status(o.id, STATUS_PAID)
                                      for o in made[::2]))
        shipped = await asyncio.gather(*(client.change_status(o.id, STATUS_SHIPPED)
                                         for o in made[::4]))
        # a retried create appends nothing, so publishes nothing
        again = await client.create_order(CreateOrder(f"{tag}-0", 1,
                                                      (ItemRequest("SKU-001", 1),)))
        assert again.id == made[0].id
        return len(made) + len(paid) + len(shipped)
    finally:
        await client.close()


def _appended(store: str) -> tuple[set[int], int]:
    """The positions of the events appended after the seed, and the outbox's backlog."""
    async def body() -> tuple[set[int], int]:
        log = await open_log(store)
        try:
            positions = {e.position for batch in [b async for b in log.read_all()]
                         for e in batch if e.position > SEEDED_EVENTS}
            return positions, await log.backlog()
        finally:
            await log.close()

    return run(body())


def _backlog(control: str) -> int:
    return query_gauges(control, timeout=2.0)[BACKLOG_GAUGE]


def _check_published(messages: list[tuple[int, dict[str, object]]], store: str) -> None:
    positions, backlog = _appended(store)
    ids = [m for m, _ in messages]
    assert backlog == 0
    assert len(ids) == len(set(ids)), "a message was published twice"
    assert set(ids) == positions  # published if and only if appended
    for message_id, body in messages:  # each message is its event
        assert body["position"] == message_id and body["type"] in ("OrderCreated",
                                                                   "StatusChanged")


def test_every_appended_event_is_published_once(launcher: Launcher, amqp_url: str, ns: str,
                                                store: str, tmp_path: Path) -> None:
    consumer = Consumer(amqp_url, ns)
    consumer.bind()
    control = str(tmp_path / "es.sock")
    service = launcher.start("eventsourced", ServeConfig(
        store=store, seed=SEED, amqp_url=amqp_url, namespace=ns, control=control))
    appended = run(_load(service.url, "once"))
    wait_until(lambda: _backlog(control) == 0, CATCH_UP_S, "the relay publishes the backlog")
    service.stop()
    messages = consumer.drain()
    assert len(messages) == appended
    _check_published(messages, store)
    assert consumer.documented == {("eventsourcedEvents", "loggedOrderCreated"),
                                   ("eventsourcedEvents", "loggedStatusChanged")}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_relay_catches_up_after_a_restart(launcher: Launcher, amqp_url: str, ns: str,
                                              store: str, tmp_path: Path) -> None:
    """First served with its broker unreachable: commands still commit and the rows wait.
    The same log served again with the broker: the relay publishes what was left."""
    control = str(tmp_path / "es.sock")
    away = f"amqp://guest:guest@127.0.0.1:{_closed_port()}/"
    first = launcher.start("eventsourced", ServeConfig(
        store=store, seed=SEED, amqp_url=away, namespace=ns, control=control), name="first")
    appended = run(_load(first.url, "away"))
    assert _backlog(control) == appended  # nothing could be published
    first.stop()
    positions, backlog = _appended(store)
    assert backlog == len(positions) == appended  # the rows outlived the process

    consumer = Consumer(amqp_url, ns)
    consumer.bind()
    second = launcher.start("eventsourced", ServeConfig(
        store=store, seed=SEED, amqp_url=amqp_url, namespace=ns, control=control),
        name="second")
    wait_until(lambda: _backlog(control) == 0, CATCH_UP_S, "the relay catches up")
    second.stop()
    messages = consumer.drain()
    _check_published(messages, store)
    assert len(messages) == appended
    assert "cannot publish" in (tmp_path / "logs" / "first.log").read_text()


def test_the_stage_restarts_it_on_its_port_and_deletes_its_namespace(tmp_path: Path,
                                                                       amqp_url: str) -> None:
    """The target now has a broker, yet it binds a port of its own: a restart (the kill
    fault's) serves on the same URL, and stopping it deletes its namespace's exchange."""
    from harness.scenario import TargetRef
    from harness.stage.stage import Stage

    ns = f"cbtest-outbox-{uuid.uuid4().hex[:8]}"
    with Stage(tmp_path / "logs", amqp_url=amqp_url, data_dir=tmp_path / "data") as stage:
        target = stage.start(TargetRef("eventsourced", "aiohttp"), name="es", namespace=ns,
                             seed=SEED, store="sqlite")
        assert (target.namespace, target.broker_url) == (ns, stage.brokers["rabbitmq"].url)
        url = target.url
        run(_load(url, "before"))
        assert stage.restart(target, "order").url == url
        assert _exchange_exists(amqp_url, exchange_name(ns))  # the relay declared it
        stage.stop(target)
    assert not _exchange_exists(amqp_url, exchange_name(ns))


def _exchange_exists(amqp_url: str, name: str) -> bool:
    async def body() -> bool:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            try:
                await (await connection.channel()).declare_exchange(name, passive=True)
            except aio_pika.exceptions.ChannelClosed:
                return False
            return True

    return bool(run(body()))


def test_a_row_published_before_its_command_counts_it_leaves_no_backlog(
        tmp_path: Path, amqp_url: str, ns: str) -> None:
    """Two creates commit; the second counts its event and wakes the relay, which publishes
    both rows before the first create has counted its own. The backlog still comes back to
    0 once it does (it stayed at 1 for good, once, on PostgreSQL, when the count was clamped
    at 0 and lost the early decrement)."""
    seeded = seed_orders(SeedSpec(2, 1, 7))

    async def body() -> tuple[int, int, object]:
        log_ = await open_log(f"sqlite:{tmp_path / 'events.sqlite'}", outbox=True)
        relay = OutboxRelay(log_, amqp_url, ns)
        try:
            await relay.start()  # an empty log: nothing pending
            for order in seeded:  # both committed; only the second create counts its event
                await log_.create_stream(order_created(order))
            relay.appended(1)
            deadline = time.monotonic() + CATCH_UP_S
            while relay.published < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # the relay runs on this loop
            published = relay.published
            relay.appended(1)  # the first create counts its event, already published
            return published, relay.backlog, GAUGES[BACKLOG_GAUGE]
        finally:
            await relay.stop()
            await log_.close()

    assert run(body()) == (2, 0, 0)
