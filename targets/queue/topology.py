"""Every queue, exchange and binding of the queue target, declared in one place.

Server and client both declare the shared part (declaring is idempotent when the arguments
agree), so whichever starts first creates it and a mismatch fails loudly at start-up instead
of silently routing nowhere. Names carry the namespace, so runs on one broker never collide.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from targets.flow.events import SUBSCRIPTIONS
from targets.redact import redact

DEFAULT_NAMESPACE = "commbench"
RECONNECT_INTERVAL_S = 0.5  # a robust connection's pause between attempts (aio-pika's: 5 s)
PREFETCH = 64  # unacked messages per server consumer: bounds in-flight work and memory
CREATED = "order.created"  # event routing key prefix; the full key ends with the client id
REJECTED = "order.rejected"  # an invalid create: same body shape with "error" instead of "order"


@dataclass(frozen=True, slots=True)
class Names:
    """Broker object names for one namespace."""

    ns: str

    @property
    def rpc(self) -> str:
        return f"{self.ns}.rpc"

    @property
    def commands(self) -> str:
        return f"{self.ns}.commands"

    @property
    def events(self) -> str:
        return f"{self.ns}.events"

    @property
    def dlx(self) -> str:
        return f"{self.ns}.dlx"

    @property
    def dead(self) -> str:
        return f"{self.ns}.dead"

    @property
    def saga(self) -> str:
        """The order flow's event exchange (topology chain): routing key = event name."""
        return f"{self.ns}.saga"

    def saga_queue(self, role: str) -> str:
        return f"{self.ns}.saga.{role}"

    def reply_queue(self, client_id: str) -> str:
        # Named, not server-generated, so a robust reconnect re-declares the same queue
        # and reply_to stays valid.
        return f"{self.ns}.reply.{client_id}"

    def event_queue(self, client_id: str) -> str:
        return f"{self.ns}.client.{client_id}"


@dataclass(frozen=True, slots=True)
class Shared:
    """The declared shared objects of one namespace."""

    names: Names
    rpc: AbstractQueue
    commands: AbstractQueue
    events: AbstractExchange
    dead: AbstractQueue


async def declare_shared(channel: AbstractChannel, ns: str, max_length: int | None = None) -> Shared:
    """Request and command queues dead-letter into `<ns>.dlx` → `<ns>.dead`. `max_length`
    (the shed policy) bounds each of them: a publish past it is refused (reject-publish), so
    the client learns at once instead of its message waiting behind the backlog. Server and
    client declare alike, so both must be given the same bound (the target URL carries it)."""
    names = Names(ns)
    dlx = await channel.declare_exchange(names.dlx, aio_pika.ExchangeType.FANOUT, durable=True)
    dead = await channel.declare_queue(names.dead, durable=True)
    await dead.bind(dlx, routing_key="")
    dead_letter: dict[str, object] = {"x-dead-letter-exchange": names.dlx}
    if max_length is not None:
        dead_letter |= {"x-max-length": max_length, "x-overflow": "reject-publish"}
    rpc = await channel.declare_queue(names.rpc, durable=True, arguments=dead_letter)
    commands = await channel.declare_queue(names.commands, durable=True, arguments=dead_letter)
    events = await channel.declare_exchange(
        names.events, aio_pika.ExchangeType.TOPIC, durable=True
    )
    return Shared(names, rpc, commands, events, dead)


@dataclass(frozen=True, slots=True)
class Saga:
    """The declared objects of the order flow's saga (topology chain)."""

    shared: Shared
    exchange: AbstractExchange
    queues: dict[str, AbstractQueue]  # role → its durable queue, bound to the events it consumes


async def declare_saga(channel: AbstractChannel, ns: str, max_length: int | None = None) -> Saga:
    """The saga exchange and every service's queue (durable, dead-lettering like the command
    queue), bound per targets.flow.saga.SUBSCRIPTIONS. Every role declares all of them, so
    an event published before its consumer first started waits in its queue."""
    shared = await declare_shared(channel, ns, max_length)
    names = shared.names
    exchange = await channel.declare_exchange(names.saga, aio_pika.ExchangeType.TOPIC, durable=True)
    queues: dict[str, AbstractQueue] = {}
    for role, events in SUBSCRIPTIONS.items():
        queue = await channel.declare_queue(names.saga_queue(role), durable=True,
                                            arguments={"x-dead-letter-exchange": names.dlx})
        for event in events:
            await queue.bind(exchange, routing_key=event)
        queues[role] = queue
    return Saga(shared, exchange, queues)


async def declare_client(
    channel: AbstractChannel, ns: str, client_id: str
) -> tuple[AbstractQueue, AbstractQueue]:
    """A client's private reply queue and event queue (exclusive: gone with its connection).

    The event queue receives this client's outcomes only: `order.created.<id>` and
    `order.rejected.<id>`; observers may bind `order.created.#` on their own queue.
    """
    names = Names(ns)
    reply = await channel.declare_queue(
        names.reply_queue(client_id), exclusive=True, auto_delete=True
    )
    events_queue = await channel.declare_queue(
        names.event_queue(client_id), exclusive=True, auto_delete=True
    )
    for prefix in (CREATED, REJECTED):
        await events_queue.bind(names.events, routing_key=f"{prefix}.{client_id}")
    return reply, events_queue


def depth_queues(ns: str, roles: tuple[str, ...], chain: bool) -> list[str]:
    """The queues whose depths a run samples (the registry's `depth_queues`)."""
    names = Names(ns)
    out = [names.commands, names.rpc, names.dead]
    return out + ([names.saga_queue(r) for r in roles] if chain else [])


async def delete_shared(channel: AbstractChannel, ns: str) -> None:
    """Remove a namespace's durable objects (test and benchmark clean-up)."""
    names = Names(ns)  # the saga's objects too; deleting what was never declared is a no-op
    for queue in (names.rpc, names.commands, names.dead, *map(names.saga_queue, SUBSCRIPTIONS)):
        await channel.queue_delete(queue)
    for exchange in (names.events, names.dlx, names.saga):
        await channel.exchange_delete(exchange)


# Query parameters of a target URL that are the target's, not the broker's: the namespace,
# and the policies a client must apply too (the command's deadline, the queues' bound).
OURS = ("namespace", "deadline", "max_length")


@dataclass(frozen=True, slots=True)
class Target:
    """What a target URL tells a client beside the broker's URL."""

    amqp_url: str
    ns: str
    deadline_s: float | None = None  # timeouts policy: a command's life (expiration, header)
    max_length: int | None = None  # shed policy: the request and command queues' bound


def target_url(amqp_url: str, ns: str, deadline_s: float | None = None,
               max_length: int | None = None) -> str:
    """The URL a queue client is given: the broker URL plus `namespace=<ns>` and the
    policies the client applies too."""
    parts = urlsplit(amqp_url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in OURS]
    query.append(("namespace", ns))
    query += [("deadline", f"{deadline_s:g}")] if deadline_s else []
    query += [("max_length", str(max_length))] if max_length else []
    return urlunsplit(parts._replace(query=urlencode(query)))


def parse_target_url(url: str) -> Target:
    """The broker URL (other query parameters kept), the namespace and the policies."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    got = {k: v for k, v in query if k in OURS}
    rest = urlencode([(k, v) for k, v in query if k not in OURS])
    try:
        deadline = float(got["deadline"]) if got.get("deadline") else None
        max_length = int(got["max_length"]) if got.get("max_length") else None
    except ValueError:
        deadline = max_length = None  # not ours to judge: a client of an older server
    return Target(urlunsplit(parts._replace(query=rest)), got.get("namespace") or DEFAULT_NAMESPACE,
                  deadline, max_length)


def split_target_url(url: str) -> tuple[str, str]:
    """(broker URL without our parameters, namespace)."""
    t = parse_target_url(url)
    return t.amqp_url, t.ns


def url_problem(amqp_url: str) -> str | None:
    """Why `amqp_url` cannot name a broker, or None. Checked before connecting, because a
    robust connection retries a hopeless URL forever instead of failing."""
    parts = urlsplit(amqp_url)
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        return (f"{redact(amqp_url)!r} is not a broker URL: use amqp://USER:PASSWORD@HOST:PORT/VHOST, "
                "e.g. amqp://guest:guest@127.0.0.1:5672/")
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        return f"{redact(amqp_url)!r} has an invalid port"
    return None
