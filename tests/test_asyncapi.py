"""docs/asyncapi.yaml against the queue transport's code, so the document cannot drift (the
eventsourced outbox's messages, on a real broker, in test_outbox.py).

Without a broker: the topology that topology.py declares equals the one the document
describes, the document's ranges and names are the core's constants, and every message the
real client and the real server write (run against an in-memory stand-in for RabbitMQ)
validates against the document's schemas; every message the document declares is written.
With a broker: the documented queues and exchanges redeclare cleanly next to a running
server, and a raw client built from the document alone gets documented answers.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import orjson
import pytest
import yaml
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from targets.core.errors import InvalidRequest, NotFound
from targets.core.model import CATALOGUE, STATUSES, CreateOrder, ItemRequest
from targets.core.seed import SeedSpec
from targets.core.service import DEFAULT_LIST_LIMIT, build_service
from targets.core.validation import (
    ID_MAX,
    MAX_ITEMS,
    MAX_LIST_LIMIT,
    MAX_QUANTITY,
    MAX_REQUEST_ID,
    MIN_ITEMS,
    MIN_QUANTITY,
)
from targets.eventsourced.events import EVENT_TYPES, ORDER_CREATED, STATUS_CHANGED
from targets.eventsourced.outbox import ROUTING_PREFIX, exchange_name
from targets.queue import codec
from targets.queue.client import QueueClient
from targets.queue.server import Worker
from targets.queue.topology import (
    CREATED,
    DEFAULT_NAMESPACE,
    PREFETCH,
    REJECTED,
    Names,
    Target,
    declare_client,
    declare_shared,
    delete_shared,
)
from targets.serving import ServeConfig
from tests.conftest import run

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.yaml"
DOC: dict[str, Any] = yaml.safe_load(DOC_PATH.read_text())
DOC_URI = "urn:commbench:asyncapi"
REGISTRY: Registry = Registry().with_resource(DOC_URI, Resource(DOC, specification=DRAFT7))
SEED = SeedSpec(users=5, orders_per_user=3)
NS = "cbdoc"


# --- reading the document -------------------------------------------------------------------

def _at(pointer: str) -> Any:
    """The node at a local JSON pointer ("#/a/b") of the document."""
    node: Any = DOC
    for part in pointer.removeprefix("#").strip("/").split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        if key:
            node = node[int(key)] if isinstance(node, list) else node[key]
    return node


def _deref(pointer: str) -> str:
    """Follow `$ref`s from `pointer` to the pointer of the object they end at."""
    while isinstance(node := _at(pointer), dict) and "$ref" in node:
        pointer = node["$ref"]
    return pointer


def _validator(pointer: str) -> Draft7Validator:
    """Validates against the schema at `pointer` (AsyncAPI's default schema format is a
    superset of JSON Schema draft 7), its `#/components/...` references resolved."""
    return Draft7Validator({"$ref": f"{DOC_URI}{pointer}"}, registry=REGISTRY)


def _amqp(channel: dict[str, Any]) -> dict[str, Any]:
    return channel["bindings"]["amqp"]


def _exchange(binding: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    props = {"type": binding["type"], "durable": binding["durable"],
             "autoDelete": binding["autoDelete"]}
    return binding["name"], props


@dataclass
class Topology:
    """Queues, exchanges and queue bindings, in the document's terms."""

    queues: dict[str, dict[str, Any]] = field(default_factory=dict)
    exchanges: dict[str, dict[str, Any]] = field(default_factory=dict)
    bindings: set[tuple[str, str, str]] = field(default_factory=set)  # queue, exchange, key

    def add_exchange(self, name: str, props: dict[str, Any]) -> None:
        assert self.exchanges.setdefault(name, props) == props, (
            f"exchange {name} declared again with other properties")

    def add_queue(self, name: str, props: dict[str, Any]) -> None:
        assert self.queues.setdefault(name, props) == props, (
            f"queue {name} declared again with other properties")


def _documented_topology() -> Topology:
    topo = Topology()
    for channel in DOC["channels"].values():
        amqp = _amqp(channel)
        if amqp["is"] == "routingKey":
            topo.add_exchange(*_exchange(amqp["exchange"]))
            continue
        queue = amqp["queue"]
        topo.add_queue(queue["name"], {
            "durable": queue["durable"], "exclusive": queue["exclusive"],
            "autoDelete": queue["autoDelete"], "arguments": amqp.get("x-arguments", {}),
        })
        for bound in amqp.get("x-bound-to", []):
            name, props = _exchange(bound["exchange"])
            topo.add_exchange(name, props)
            topo.bindings.add((queue["name"], name, bound["routingKey"]))
    return topo


# --- an in-memory stand-in for RabbitMQ ---------------------------------------------------------

@dataclass
class Published:
    exchange: str
    routing_key: str
    message: aio_pika.Message
    mandatory: bool


class Delivered:
    """What a consumer gets: the published message, where it came from, ack and reject."""

    def __init__(self, broker: FakeBroker, queue: str, sent: Published) -> None:
        self.broker, self.queue, self.sent = broker, queue, sent
        self.body = sent.message.body
        self.reply_to = sent.message.reply_to
        self.correlation_id = sent.message.correlation_id
        self.headers = sent.message.headers
        self.routing_key = sent.routing_key

    async def ack(self) -> None:
        self.broker.acked.append(self)

    async def reject(self, requeue: bool = False) -> None:
        assert not requeue, "the server never requeues"
        dlx = self.broker.topology.queues[self.queue]["arguments"].get("x-dead-letter-exchange")
        for queue in self.broker.routes(dlx, self.routing_key) if dlx else ():
            self.broker.parked.setdefault(queue, []).append(self)


class FakeBroker:
    """Records what aio-pika code declares and publishes and routes each message to its
    queue's consumer at once, so the real client and server code run without RabbitMQ.
    Declaring an existing name with other properties fails, as RabbitMQ's
    PRECONDITION_FAILED does."""

    def __init__(self) -> None:
        self.topology = Topology()
        self.consumers: dict[str, Callable[[Delivered], Awaitable[None]]] = {}
        self.published: list[Published] = []
        self.acked: list[Delivered] = []
        self.parked: dict[str, list[Delivered]] = {}

    def routes(self, exchange: str, routing_key: str) -> list[str]:
        if exchange == "":
            return [routing_key] if routing_key in self.topology.queues else []
        fanout = self.topology.exchanges[exchange]["type"] == "fanout"
        return [q for q, ex, key in sorted(self.topology.bindings)
                if ex == exchange and (fanout or key == routing_key)]

    async def publish(self, sent: Published) -> None:
        self.published.append(sent)
        for queue in self.routes(sent.exchange, sent.routing_key):
            consumer = self.consumers.get(queue)
            if consumer is None:
                self.parked.setdefault(queue, []).append(Delivered(self, queue, sent))
            else:
                await consumer(Delivered(self, queue, sent))


def _call_args(method: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """The arguments aio-pika's own `method` would see, defaults included."""
    bound = inspect.signature(method).bind(None, *args, **kwargs)
    bound.apply_defaults()
    return bound.arguments


class FakeExchange:
    def __init__(self, broker: FakeBroker, name: str) -> None:
        self.broker, self.name = broker, name

    async def publish(self, message: aio_pika.Message, routing_key: str, *,
                      mandatory: bool = True, **_: Any) -> None:
        await self.broker.publish(Published(self.name, routing_key, message, mandatory))


class FakeQueue:
    def __init__(self, broker: FakeBroker, name: str) -> None:
        self.broker, self.name = broker, name

    async def bind(self, exchange: FakeExchange | str, *args: Any, **kwargs: Any) -> None:
        key = _call_args(aio_pika.Queue.bind, exchange, *args, **kwargs)["routing_key"]
        name = exchange if isinstance(exchange, str) else exchange.name
        self.broker.topology.bindings.add((self.name, name, key))

    async def consume(self, callback: Callable[[Delivered], Awaitable[None]], **_: Any) -> str:
        self.broker.consumers[self.name] = callback
        return f"ctag-{self.name}"


class FakeChannel:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.default_exchange = FakeExchange(broker, "")

    async def declare_exchange(self, *args: Any, **kwargs: Any) -> FakeExchange:
        a = _call_args(aio_pika.Channel.declare_exchange, *args, **kwargs)
        self.broker.topology.add_exchange(a["name"], {
            "type": aio_pika.ExchangeType(a["type"]).value, "durable": a["durable"],
            "autoDelete": a["auto_delete"]})
        return FakeExchange(self.broker, a["name"])

    async def declare_queue(self, *args: Any, **kwargs: Any) -> FakeQueue:
        a = _call_args(aio_pika.Channel.declare_queue, *args, **kwargs)
        self.broker.topology.add_queue(a["name"], {
            "durable": a["durable"], "exclusive": a["exclusive"],
            "autoDelete": a["auto_delete"], "arguments": a["arguments"] or {}})
        return FakeQueue(self.broker, a["name"])


class FakeConnection:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.connected = asyncio.Event()
        self.connected.set()
        self.close_callbacks: set[Callable[..., Any]] = set()
        self.reconnect_callbacks: set[Callable[..., Any]] = set()

    async def channel(self, **_: Any) -> FakeChannel:
        return FakeChannel(self.broker)

    async def close(self) -> None:
        self.connected.clear()


# --- the checks ---------------------------------------------------------------------------

def test_topology_is_what_the_code_declares() -> None:
    """Declared with the parameters' own names as values, the code's queues, exchanges,
    arguments and bindings are the document's, name for name."""
    broker = FakeBroker()

    async def declare() -> None:
        channel = FakeChannel(broker)
        await declare_shared(channel, "{namespace}")
        await declare_client(channel, "{namespace}", "{clientId}")

    run(declare())
    documented = _documented_topology()
    assert broker.topology.queues == documented.queues
    assert broker.topology.exchanges == documented.exchanges
    assert broker.topology.bindings == documented.bindings
    names = Names("{namespace}")
    assert {names.rpc, names.commands, names.dead, names.reply_queue("{clientId}"),
            names.event_queue("{clientId}")} == set(documented.queues)
    assert {names.events, names.dlx} == set(documented.exchanges)

    events = {c["address"] for c in DOC["channels"].values() if _amqp(c)["is"] == "routingKey"}
    assert events == {f"{CREATED}.{{clientId}}", f"{REJECTED}.{{clientId}}",
                      f"{ROUTING_PREFIX}.{{eventType}}"}
    # the eventsourced outbox publishes on the queue's exchange (declared alike: topic, durable)
    logged = _amqp(DOC["channels"]["eventsourcedEvents"])["exchange"]["name"]
    assert logged == exchange_name("{namespace}") == names.events
    for channel in DOC["channels"].values():  # a queue channel's address is its queue's name
        if _amqp(channel)["is"] == "queue" and channel["address"] is not None:
            assert channel["address"] == _amqp(channel)["queue"]["name"]
    receives = [op for op in DOC["operations"].values() if op["action"] == "receive"]
    assert receives and all(op["x-prefetch-count"] == PREFETCH for op in receives)
    assert DOC["components"]["parameters"]["namespace"]["default"] == DEFAULT_NAMESPACE
    assert ServeConfig().namespace == DEFAULT_NAMESPACE
    assert DOC["defaultContentType"] == codec.CONTENT_TYPE


def test_schemas_state_the_cores_rules() -> None:
    """Ranges and enumerations in the schemas are the core's constants."""
    schemas = "#/components/schemas"
    expected: dict[str, Any] = {
        f"{schemas}/Id/minimum": 1,
        f"{schemas}/Id/maximum": ID_MAX,
        f"{schemas}/Sku/enum": sorted(CATALOGUE),
        f"{schemas}/Quantity/minimum": MIN_QUANTITY,
        f"{schemas}/Quantity/maximum": MAX_QUANTITY,
        f"{schemas}/Order/properties/items/minItems": MIN_ITEMS,
        f"{schemas}/Order/properties/items/maxItems": MAX_ITEMS,
        f"{schemas}/Order/properties/status/enum": list(STATUSES),
        f"{schemas}/ListRequest/properties/limit/minimum": 1,
        f"{schemas}/ListRequest/properties/limit/maximum": MAX_LIST_LIMIT,
        f"{schemas}/ListRequest/properties/limit/default": DEFAULT_LIST_LIMIT,
        f"{schemas}/OrdersReply/properties/ok/maxItems": MAX_LIST_LIMIT,
        f"{schemas}/CreateOrderCommand/properties/request_id/maxLength": MAX_REQUEST_ID,
        f"{schemas}/CreateOrderCommand/properties/items/minItems": MIN_ITEMS,
        f"{schemas}/CreateOrderCommand/properties/items/maxItems": MAX_ITEMS,
        f"{schemas}/CreateOrderCommand/properties/client_id/maxLength": codec.MAX_CLIENT_ID,
        "#/components/parameters/eventType/enum": list(EVENT_TYPES),
        f"{schemas}/LoggedOrderCreated/properties/type/const": ORDER_CREATED,
        f"{schemas}/LoggedStatusChanged/properties/type/const": STATUS_CHANGED,
    }
    assert {pointer: _at(pointer) for pointer in expected} == expected


def _refs(node: Any, where: str = "#") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield where, value
            else:
                yield from _refs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for n, value in enumerate(node):
            yield from _refs(value, f"{where}/{n}")


def test_references_resolve_and_operations_use_their_channels_messages() -> None:
    refs = list(_refs(DOC))
    assert len(refs) > 40
    for where, ref in refs:
        assert ref.startswith("#/"), (where, ref)
        _at(ref)  # KeyError: a reference to nothing
    for name, op in DOC["operations"].items():
        channel = op["channel"]["$ref"]
        assert all(m["$ref"].startswith(f"{channel}/messages/") for m in op["messages"]), name
        if "reply" in op:
            reply = op["reply"]["channel"]["$ref"]
            assert all(m["$ref"].startswith(f"{reply}/messages/") for m in op["reply"]["messages"])


def _properties(message: aio_pika.Message | aio_pika.abc.AbstractIncomingMessage) -> dict[str, Any]:
    """The AMQP properties the document's message `headers` describe, as sent."""
    props: dict[str, Any] = {
        "content_type": message.content_type,
        "correlation_id": message.correlation_id,
        "reply_to": message.reply_to,
        "delivery_mode": int(message.delivery_mode) if message.delivery_mode else None,
        "message_id": message.message_id,  # the outbox's only (its event's log position)
        "type": message.type,
    }
    return {**{k: v for k, v in props.items() if v is not None}, **(message.headers or {})}


def _channel_of(exchange: str, routing_key: str, values: dict[str, str]) -> str:
    """The one channel a message published to (exchange, routing key) travels on."""
    def fill(template: str) -> str:
        for name, value in values.items():
            template = template.replace(f"{{{name}}}", value)
        return template

    found = []
    for name, channel in DOC["channels"].items():
        amqp = _amqp(channel)
        if exchange == "" and amqp["is"] == "queue":
            if fill(amqp["queue"]["name"]) == routing_key:
                found.append(name)
        elif amqp["is"] == "routingKey" and fill(amqp["exchange"]["name"]) == exchange:
            if fill(channel["address"]) == routing_key:
                found.append(name)
    assert len(found) == 1, f"({exchange!r}, {routing_key!r}) travels on {found}"
    return found[0]


def _documented_message(channel: str, props: dict[str, Any], body: Any) -> str:
    """The channel's message whose headers and payload schemas accept this one; its name."""
    matches = []
    rejections = []
    for name in DOC["channels"][channel]["messages"]:
        message = _deref(f"#/channels/{channel}/messages/{name}")
        errors = [f"headers: {e.message}" for e in _validator(f"{message}/headers").iter_errors(props)]
        errors += [f"payload: {e.message}" for e in _validator(f"{message}/payload").iter_errors(body)]
        content_type = _at(message).get("contentType", DOC["defaultContentType"])
        if props.get("content_type", content_type) != content_type:
            errors.append(f"content type {props['content_type']} is not {content_type}")
        if errors:
            rejections.append((name, errors))
        else:
            matches.append(name)
    assert matches, f"no message of channel {channel} fits {props} {body}: {rejections}"
    return matches[0]


def _check_operation_bindings(channel: str, sent: Published) -> None:
    """Delivery mode and `mandatory` of a publish are its operations' AMQP bindings."""
    for op in DOC["operations"].values():
        if op["channel"]["$ref"] == f"#/channels/{channel}":
            amqp = op["bindings"]["amqp"]
            assert int(sent.message.delivery_mode) == amqp["deliveryMode"], (channel, op)
            if "mandatory" in amqp:
                assert sent.mandatory == amqp["mandatory"], (channel, op)


def test_every_message_client_and_server_write_is_documented() -> None:
    """The real QueueClient and the real server Worker talk through the stand-in broker;
    every message either writes fits a documented message of the channel it travels on,
    and every documented message (but the broker-made dead letter) is written."""
    broker = FakeBroker()
    others: list[aio_pika.Message] = []  # sent off the document on purpose

    async def conversation() -> QueueClient:
        service = await build_service("memory", SEED)
        server_channel = FakeChannel(broker)
        shared = await declare_shared(server_channel, NS)
        worker = Worker(service, server_channel.default_exchange,
                        FakeExchange(broker, shared.names.events))
        await shared.rpc.consume(worker.on_rpc)
        await shared.commands.consume(worker.on_command)
        client = QueueClient(FakeConnection(broker), Target("amqp://", NS),  # type: ignore[arg-type]
                             timeout=10)
        await client._open()

        async def refused(call: Awaitable[object]) -> None:
            """A call whose request breaks a documented range on purpose: the request is
            left out of the checks below, the error answering it is checked."""
            first = len(broker.published)
            with pytest.raises(InvalidRequest):
                await call
            others.append(broker.published[first].message)

        assert (await client.get_order(1)).id == 1
        with pytest.raises(NotFound):
            await client.get_order(SEED.total + 1)
        await refused(client.get_order(0))
        assert [o.id for o in await client.list_user_orders(2, limit=2)] == [6, 5]
        assert await client.list_user_orders(SEED.users + 1) == []
        assert await client.noop() is None  # the floor: nothing asked, nothing answered
        await refused(client.list_user_orders(1, limit=0))
        created = await client.create_order(
            CreateOrder("doc-1", 2, (ItemRequest("SKU-001", 2), ItemRequest("SKU-020", 1))))
        assert await client.create_order(CreateOrder("doc-1", 2, (ItemRequest("SKU-001", 2),))) \
            == created  # a retry: the first order again
        await refused(client.create_order(CreateOrder("doc-2", 2, (ItemRequest("SKU-999", 1),))))

        # Other senders: an unknown op gets an error reply and is dead-lettered; a request
        # id the core refuses is echoed as sent in the rejection.
        unknown_op = aio_pika.Message(b'{"op": "delete", "order_id": 1}',
                                      reply_to=client._reply_to, correlation_id="raw-1")
        numeric_id = aio_pika.Message(orjson.dumps(
            {"request_id": 7, "user_id": 1, "items": [], "client_id": client.client_id}),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        others.extend((unknown_op, numeric_id))
        raw = FakeExchange(broker, "")
        await raw.publish(unknown_op, routing_key=Names(NS).rpc)
        await raw.publish(numeric_id, routing_key=Names(NS).commands)
        return client

    client = run(conversation())
    assert [d.body for d in broker.parked[Names(NS).dead]] == [b'{"op": "delete", "order_id": 1}']

    seen: dict[str, set[str]] = {}
    values = {"namespace": NS, "clientId": client.client_id}
    for sent in broker.published:
        if any(sent.message is other for other in others):
            continue
        channel = _channel_of(sent.exchange, sent.routing_key, values)
        body = orjson.loads(sent.message.body)
        seen.setdefault(channel, set()).add(
            _documented_message(channel, _properties(sent.message), body))
        _check_operation_bindings(channel, sent)
    written = {(c, m) for c, names in seen.items() for m in names}
    documented = {(c, m) for c, ch in DOC["channels"].items() for m in ch["messages"]
                  # dead: written by RabbitMQ; the eventsourced server's: test_outbox.py
                  if c not in ("dead", "clientEvents", "eventsourcedEvents")}
    assert written == documented
    malformed = next(orjson.loads(p.message.body) for p in broker.published
                     if p.routing_key == client._reply_to and p.message.correlation_id == "raw-1")
    assert malformed["error"]["field"] == "body"
    rejected = [orjson.loads(p.message.body) for p in broker.published
                if p.routing_key.startswith(f"{REJECTED}.")]
    assert [e["request_id"] for e in rejected] == ["doc-2", 7]


# --- against RabbitMQ -------------------------------------------------------------------------

@pytest.fixture
def served_ns(launcher, amqp_url: str) -> Iterator[str]:
    """A queue server in a fresh namespace; the namespace's objects deleted afterwards."""
    ns = f"cbdoc-{uuid.uuid4().hex[:8]}"
    service = launcher.start("queue", ServeConfig(amqp_url=amqp_url, namespace=ns, seed=SEED))
    try:
        yield ns
    finally:
        service.stop()

        async def clean() -> None:
            connection = await aio_pika.connect(amqp_url)
            async with connection:
                await delete_shared(await connection.channel(), ns)

        run(clean())


@pytest.mark.broker
def test_document_holds_against_a_running_server(served_ns: str, amqp_url: str) -> None:
    """Next to a running server, every shared queue and exchange redeclares with the
    document's properties (RabbitMQ refuses a mismatch), and a client that knows only the
    document gets documented replies, events and dead letters."""
    ns = served_ns
    client_id = uuid.uuid4().hex[:16]

    def fill(template: str) -> str:
        return template.replace("{namespace}", ns).replace("{clientId}", client_id)

    topo = _documented_topology()

    async def body() -> None:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            for name, props in topo.exchanges.items():
                await channel.declare_exchange(fill(name), props["type"], durable=props["durable"],
                                               auto_delete=props["autoDelete"])
            queues = {}
            for name, props in topo.queues.items():  # the exclusive ones: this client's own
                queues[name] = await channel.declare_queue(
                    fill(name), durable=props["durable"], exclusive=props["exclusive"],
                    auto_delete=props["autoDelete"],
                    arguments={k: fill(v) for k, v in props["arguments"].items()} or None)
            for queue, exchange, key in topo.bindings:
                if queue in queues:
                    await queues[queue].bind(fill(exchange), routing_key=fill(key))

            reply_queue = queues["{namespace}.reply.{clientId}"]
            events_queue = queues["{namespace}.client.{clientId}"]
            rpc = fill(_amqp(DOC["channels"]["rpc"])["queue"]["name"])
            commands = fill(_amqp(DOC["channels"]["commands"])["queue"]["name"])
            sends = [
                (rpc, {"op": "get", "order_id": 1}, reply_queue, "orderReply"),
                (rpc, {"op": "list", "user_id": 2}, reply_queue, "ordersReply"),
                (rpc, {"op": "get", "order_id": 0}, reply_queue, "errorReply"),
                (rpc, {"op": "nope"}, reply_queue, "errorReply"),
                (commands, {"request_id": "raw-1", "user_id": 2, "client_id": client_id,
                            "items": [{"sku": "SKU-002", "quantity": 3}]}, events_queue,
                 "orderCreated"),
                (commands, {"request_id": "raw-2", "user_id": 0, "client_id": client_id,
                            "items": [{"sku": "SKU-002", "quantity": 3}]}, events_queue,
                 "orderRejected"),
            ]
            # One consumer per queue for the whole exchange: these queues are auto-delete.
            async with reply_queue.iterator() as replies, events_queue.iterator() as events:
                for n, (queue, request, answers, expected) in enumerate(sends):
                    persistent = queue == commands
                    await channel.default_exchange.publish(aio_pika.Message(
                        orjson.dumps(request), content_type=codec.CONTENT_TYPE,
                        correlation_id=None if persistent else f"c{n}",
                        reply_to=None if persistent else reply_queue.name,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT if persistent else None,
                    ), routing_key=queue)
                    async with asyncio.timeout(10):
                        answer = await anext(replies if answers is reply_queue else events)
                    await answer.ack()
                    doc_channel = _channel_of(answer.exchange or "", answer.routing_key or "",
                                              {"namespace": ns, "clientId": client_id})
                    got = _documented_message(doc_channel, _properties(answer),
                                              orjson.loads(answer.body))
                    assert got == expected, (request, got)
                    if not persistent:
                        assert answer.correlation_id == f"c{n}"

            dead = await channel.get_queue(fill("{namespace}.dead"))
            async with asyncio.timeout(10), dead.iterator() as it:
                letter = await anext(it)
                await letter.ack()
            assert orjson.loads(letter.body) == {"op": "nope"}
            assert _documented_message("dead", _properties(letter), None) == "deadLetter"

    run(body())
