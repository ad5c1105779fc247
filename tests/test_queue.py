"""Queue target: a real `commbench serve queue` process on a real RabbitMQ (the `amqp_url`
fixture finds or starts one), each test in its own namespace, removed afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Iterator

import aio_pika
import orjson
import pytest

from harness.errors import UserError
from harness.stage.launcher import Launcher, Service
from targets.core.errors import InvalidRequest, NotFound, TransportError
from targets.core.model import CreateOrder, ItemRequest
from targets.core.seed import SeedSpec, seed_orders
from targets.core.service import build_service
from targets.queue.client import QueueClient, connect
from targets.queue.topology import Names, delete_shared, split_target_url, target_url
from targets.serving import ServeConfig
from tests.conftest import run

pytestmark = pytest.mark.broker

SEED = SeedSpec(users=5, orders_per_user=3)


def _create(request_id: str, user_id: int = 2, sku: str = "SKU-003", qty: int = 2) -> CreateOrder:
    return CreateOrder(request_id, user_id, (ItemRequest(sku, qty),))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _delete_namespace(amqp_url: str, ns: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        await delete_shared(await connection.channel(), ns)


@pytest.fixture
def ns(amqp_url: str) -> Iterator[str]:
    """A fresh namespace; its durable queues and exchanges are deleted after the test."""
    name = f"cbtest-{uuid.uuid4().hex[:8]}"
    yield name
    run(_delete_namespace(amqp_url, name))


@pytest.fixture
def target(launcher: Launcher, amqp_url: str, ns: str) -> Iterator[Service]:
    service = launcher.start("queue", ServeConfig(amqp_url=amqp_url, namespace=ns, seed=SEED))
    yield service
    service.stop()  # before the namespace is deleted under its consumers


@contextlib.asynccontextmanager
async def _client(url: str, timeout: float = 10.0) -> AsyncIterator[QueueClient]:
    client = await connect(url, timeout=timeout)
    try:
        assert (client.transport, client.variant) == ("queue", "aio-pika")
        yield client
    finally:
        await client.close()


def test_target_url_round_trip() -> None:
    url = target_url("amqp://u:p@h:5673/vh?heartbeat=30", "cb-1")
    assert split_target_url(url) == ("amqp://u:p@h:5673/vh?heartbeat=30", "cb-1")
    assert split_target_url("amqp://guest:guest@127.0.0.1:5672/") == (
        "amqp://guest:guest@127.0.0.1:5672/", "commbench")


def test_ready_url_names_the_namespace(target: Service, amqp_url: str, ns: str) -> None:
    assert split_target_url(target.url) == (amqp_url, ns)


def test_get_and_list_match_the_core(target: Service) -> None:
    seeded = seed_orders(SEED)
    async def body() -> None:
        core = await build_service("memory", SEED)
        async with _client(target.url) as client:
            assert await client.get_order(1) == seeded[0]
            assert await client.get_order(SEED.total) == seeded[-1]
            assert await client.list_user_orders(2, limit=2) == await core.list_user_orders(2, 2)
            assert await client.list_user_orders(2) == await core.list_user_orders(2)
            assert await client.list_user_orders(SEED.users + 1) == []

    run(body())


def test_domain_errors_come_back_typed(target: Service) -> None:
    async def body() -> None:
        async with _client(target.url) as client:
            with pytest.raises(NotFound, match="order 999999 does not exist"):
                await client.get_order(999_999)
            with pytest.raises(InvalidRequest) as bad_id:
                await client.get_order(0)
            assert bad_id.value.field == "order_id"
            with pytest.raises(InvalidRequest) as bad_limit:
                await client.list_user_orders(1, limit=0)
            assert bad_limit.value.field == "limit"

    run(body())


def test_create_accepted_then_completed_and_idempotent(target: Service) -> None:
    """Accepted is the broker's confirm, before the service has even seen the command: with
    the server frozen (SIGSTOP) the create is accepted and cannot complete; it completes
    once the server resumes."""
    async def body() -> None:
        async with _client(target.url, timeout=60.0) as client:
            accepted = asyncio.Event()
            calls: list[int] = []

            def on_accepted() -> None:
                calls.append(1)
                accepted.set()

            target.signal(signal.SIGSTOP)
            try:
                task = asyncio.create_task(client.create_order(_create("r-1", qty=3),
                                                               on_accepted=on_accepted))
                # Deadline of its own, generous for a busy machine: a confirm takes ms.
                await asyncio.wait_for(accepted.wait(), 30)
                await asyncio.sleep(0.2)  # room for a completion that must not come
                assert not task.done(), "completed while the server was stopped"
            finally:
                target.signal(signal.SIGCONT)
            order = await asyncio.wait_for(task, 30)
            assert calls == [1]
            assert order.id == SEED.total + 1
            assert (order.user_id, order.status, order.total_cents) == (2, "created", 3 * 2599)
            assert await client.get_order(order.id) == order

            again = await client.create_order(_create("r-1", qty=3))
            assert again == order  # same request id: the first order, nothing new stored
            assert (await client.create_order(_create("r-2"))).id == order.id + 1

    run(body())


def test_invalid_create_is_invalid_not_a_timeout(target: Service) -> None:
    async def body() -> None:
        async with _client(target.url, timeout=30.0) as client:
            accepted: list[bool] = []
            with pytest.raises(InvalidRequest) as unknown_sku:
                await client.create_order(_create("bad-1", sku="SKU-999"),
                                          on_accepted=lambda: accepted.append(True))
            assert unknown_sku.value.field == "items[0].sku"
            assert accepted == [True]  # the broker took it; the service refused it
            with pytest.raises(InvalidRequest) as no_items:
                await client.create_order(CreateOrder("bad-2", 1, ()))
            assert no_items.value.field == "items"
            with pytest.raises(InvalidRequest) as no_request_id:  # still routable: answered
                await client.create_order(CreateOrder("", 1, (ItemRequest("SKU-001", 1),)))
            assert no_request_id.value.field == "request_id"

    run(body())


def test_concurrent_creates_get_unique_ids(target: Service) -> None:
    async def body() -> None:
        async with _client(target.url) as client:
            orders = await asyncio.gather(
                *(client.create_order(_create(f"c-{n}", user_id=1 + n % SEED.users))
                  for n in range(200))
            )
            ids = [o.id for o in orders]
            assert len(set(ids)) == 200
            assert set(ids) == set(range(SEED.total + 1, SEED.total + 201))

    run(body())


def test_events_reach_observers_of_order_created(target: Service, amqp_url: str,
                                                  ns: str) -> None:
    """Other services may follow every creation by binding `order.created.#`."""
    async def body() -> None:
        connection = await aio_pika.connect(amqp_url)
        async with connection, _client(target.url) as client:
            channel = await connection.channel()
            observer = await channel.declare_queue(exclusive=True)
            await observer.bind(Names(ns).events, routing_key="order.created.#")
            order = await client.create_order(_create("watched"))
            with pytest.raises(InvalidRequest):
                await client.create_order(_create("refused", qty=0))
            async with asyncio.timeout(10), observer.iterator() as messages:
                async for message in messages:
                    await message.ack()
                    event = orjson.loads(message.body)
                    assert event["request_id"] == "watched"  # the refused one is not "created"
                    assert event["order"]["id"] == order.id
                    assert message.routing_key == f"order.created.{client.client_id}"
                    break

    run(body())


def test_malformed_messages_are_dead_lettered_and_the_worker_keeps_serving(
    target: Service, amqp_url: str, ns: str
) -> None:
    names = Names(ns)
    garbage = [
        (names.rpc, b"\x00\xffnot json"),
        (names.rpc, b"[1, 2, 3]"),
        (names.rpc, b'{"op": "get", "order_id": 1}'),  # no reply_to: nobody to answer
        (names.commands, b"\x00\xffnot json"),
        (names.commands, b'{"user_id": 1, "items": []}'),  # no request_id
        (names.commands, b'{"request_id": "x", "items": []}'),  # no client_id to answer
    ]

    async def body() -> None:
        connection = await aio_pika.connect(amqp_url)
        async with connection, _client(target.url) as client:
            channel = await connection.channel()
            for queue, raw in garbage:
                await channel.default_exchange.publish(aio_pika.Message(raw), routing_key=queue)

            # A sender that set reply_to hears back at once instead of timing out.
            replies = await channel.declare_queue(exclusive=True)
            await channel.default_exchange.publish(
                aio_pika.Message(b'{"op": "delete"}', reply_to=replies.name, correlation_id="7"),
                routing_key=names.rpc,
            )
            dead = await channel.get_queue(names.dead)
            dead_bodies: list[bytes] = []
            async with asyncio.timeout(10):
                async with replies.iterator() as it:
                    reply = await anext(it)
                async with dead.iterator() as it:
                    async for message in it:
                        await message.ack()
                        death = message.headers["x-death"][0]
                        assert death["reason"] == "rejected"
                        assert death["queue"] in (names.rpc, names.commands)
                        dead_bodies.append(message.body)
                        if len(dead_bodies) == len(garbage) + 1:
                            break
            assert reply.correlation_id == "7"
            assert orjson.loads(reply.body)["error"]["kind"] == "invalid"
            assert sorted(dead_bodies) == sorted([raw for _, raw in garbage] + [b'{"op": "delete"}'])

            # Still serving, both kinds of work.
            assert (await client.get_order(1)).id == 1
            assert (await client.create_order(_create("after-garbage"))).id == SEED.total + 1

    run(body())
    assert target.alive()
    target.stop()
    log = target.log_path.read_text()
    assert "Traceback" not in log and log.count("dead-lettering a malformed message") == 7


def test_graceful_stop_exits_zero(target: Service) -> None:
    async def body() -> None:
        async with _client(target.url) as client:
            await client.get_order(1)

    run(body())
    assert target.stop() == 0


def test_lookup_without_a_server_times_out(amqp_url: str, ns: str) -> None:
    async def body() -> None:
        async with _client(target_url(amqp_url, ns), timeout=0.5) as client:
            with pytest.raises(TransportError) as exc:
                await client.get_order(1)
            assert exc.value.kind == "timeout"

    run(body())


def test_client_without_broker_is_a_broker_error() -> None:
    async def body() -> None:
        with pytest.raises(TransportError) as exc:
            await connect(f"amqp://guest:guest@127.0.0.1:{_closed_port()}/?namespace=x",
                          timeout=2.0)
        assert exc.value.kind == "broker"

    run(body())


def test_server_without_broker_fails_with_one_line(launcher: Launcher) -> None:
    port = _closed_port()
    config = ServeConfig(amqp_url=f"amqp://guest:guest@127.0.0.1:{port}/", namespace="x")
    with pytest.raises(UserError, match=rf"cannot connect to the RabbitMQ broker at "
                                        rf"amqp://guest:guest@127.0.0.1:{port}/"):
        launcher.start("queue", config)


class _Proxy:
    """A TCP relay to the broker that the test can cut, to lose the connection for real."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        self.server.close()  # no reconnection either
        for w in self.writers:
            w.transport.abort()


def test_broker_loss_fails_pending_calls_as_broker_errors(amqp_url: str, ns: str) -> None:
    """No server in this namespace: the test itself takes the request off the queue, so it
    knows the call is pending when it cuts the connection."""
    host_url, _ = split_target_url(amqp_url)
    broker_port = aio_pika.connection.make_url(host_url).port or 5672

    async def body() -> None:
        proxy = _Proxy(broker_port)
        proxied = host_url.replace(f":{broker_port}/", f":{await proxy.start()}/")
        observer = await aio_pika.connect(amqp_url)
        async with observer, _client(target_url(proxied, ns), timeout=30.0) as client:
            requests = await (await observer.channel()).get_queue(Names(ns).rpc)
            call = asyncio.create_task(client.get_order(1))
            async with asyncio.timeout(10), requests.iterator() as it:
                request = await anext(it)
            await request.ack()
            proxy.cut()
            with pytest.raises(TransportError) as pending:
                await call
            assert pending.value.kind == "broker"
            with pytest.raises(TransportError) as later:
                await client.create_order(_create("while-down"))
            assert later.value.kind == "broker"

    run(body())


def test_launcher_log_has_no_traceback(target: Service) -> None:
    async def body() -> None:
        async with _client(target.url) as client:
            await client.get_order(1)

    run(body())
    target.stop()
    log = target.log_path.read_text()
    assert "Traceback" not in log and "serving namespace" in log
