"""Transport registry: name → server entry point and client factories.

Entry points are "module:attribute" strings resolved on use, so listing transports imports
no transport library. Adding a transport is one folder in targets/ and one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from targets.api import ClientFactory
from targets.serving import (
    ROLE_INVENTORY,
    ROLE_NOTIFICATION,
    ROLE_ORDER,
    ROLE_PAYMENT,
    ServeConfig,
)


@dataclass(frozen=True)
class BrokerKind:
    """A broker some transports need. The harness finds or starts it through `provider`, an
    object with `ensure(url, private=)` (a context manager yielding the broker's `url`,
    `private`, `startup_s` and, private, `switch(on)` for the broker fault), `describe(info)`,
    `pids(url)` and `delete_namespace(url, namespace)`; a second broker kind is a new provider
    module and a line here."""

    name: str
    provider: str  # "module:attribute"

    def resolve(self) -> Any:
        return _resolve(self.provider)


RABBITMQ = BrokerKind("rabbitmq", "harness.stage.broker:RABBITMQ")
POLICY_PARTS = ("timeouts", "retries", "breaker", "bulkhead", "shed")  # harness Policies.on


@dataclass(frozen=True)
class Transport:
    """What the harness needs to know about a transport, so no code elsewhere checks names."""

    name: str
    description: str
    # server variant → "module:function", function(ServeConfig) runs until SIGTERM/SIGINT;
    # the first is the default. Other variants are rows of their own (`rest-granian`).
    servers: dict[str, str]
    clients: dict[str, str]  # variant name → "module:async factory(url, timeout=)"
    broker: BrokerKind | None = None  # the stage finds or starts it; names are namespaced
    # A create is acknowledged (the broker's confirm) before it completes: recorded apart as
    # `create_accepted`.
    accepted_moment: bool = False
    # "module:async function" run once on the locust bridge's loop before the first client
    # (a library that needs help inside a gevent-patched process).
    gevent_setup: str | None = None
    # The services `serve` can run (ServeConfig.role); the first is the edge clients call.
    roles: tuple[str, ...] = (ROLE_ORDER,)
    # The parts of a scenario's [policies] its services apply (the chain edge's hops on
    # REST and gRPC; the queue's deadline, bound and prefetch); the others are recorded as
    # not applied.
    policy_parts: tuple[str, ...] = ()
    # The --store kinds its server takes: "memory", "sqlite", "postgresql" (a URL).
    stores: tuple[str, ...] = ("memory", "sqlite", "postgresql")
    # Lookups read a projection that may trail a create: the conformance suite waits (up to
    # its deadline) for a create to become visible instead of failing at once.
    eventual_reads: bool = False
    # Its clients answer `order_at(order_id, at_ms)`: the conformance suite checks it.
    temporal_query: bool = False
    # "module:function(namespace, roles, chain) -> list[str]": the broker queues a run
    # samples each second (queues.csv); None: none (a target that only publishes).
    depth_queues: str | None = None
    # Client variants that are measuring probes, not production clients (a minimal client to
    # see the server without a client library's cost); results label their rows as probes.
    probes: frozenset[str] = frozenset()

    @property
    def serves_chain(self) -> bool:
        """It serves the chain topology (the order flow): it has downstream roles."""
        return len(self.roles) > 1

    def resolve_depth_queues(self) -> Callable[[str, tuple[str, ...], bool], list[str]]:
        assert self.depth_queues is not None
        return _resolve(self.depth_queues)

    def is_probe(self, variant: str) -> bool:
        return variant in self.probes

    @property
    def default_client(self) -> str:
        return next(iter(self.clients))

    @property
    def default_server(self) -> str:
        return next(iter(self.servers))

    def server_entry(self, variant: str | None = None) -> str:
        """The "module:function" of a server variant (None: the default), not imported."""
        variant = variant or self.default_server
        if variant not in self.servers:
            raise KeyError(
                f"transport {self.name!r} has no server {variant!r}; "
                f"choose one of: {', '.join(self.servers)}"
            )
        return self.servers[variant]

    def serve(self, variant: str | None = None) -> Callable[[ServeConfig], None]:
        return _resolve(self.server_entry(variant))

    def client_factory(self, variant: str | None = None) -> ClientFactory:
        variant = variant or self.default_client
        if variant not in self.clients:
            raise KeyError(
                f"transport {self.name!r} has no client {variant!r}; "
                f"choose one of: {', '.join(self.clients)}"
            )
        return _resolve(self.clients[variant])


TRANSPORTS: dict[str, Transport] = {
    t.name: t
    for t in (
        Transport("rest", "HTTP/JSON: FastAPI on uvicorn (uvloop, httptools) or granian",
                  {"uvicorn": "targets.rest.server:serve",
                   "granian": "targets.rest.server_granian:serve"},
                  {"aiohttp": "targets.rest.client_aiohttp:connect",
                   "httpx": "targets.rest.client_httpx:connect",
                   "probe": "targets.rest.client_probe:connect"},
                  roles=(ROLE_ORDER, ROLE_PAYMENT, ROLE_INVENTORY), policy_parts=POLICY_PARTS,
                  probes=frozenset({"probe"})),
        Transport("grpc", "gRPC: protobuf over HTTP/2, grpc.aio",
                  {"grpcio": "targets.grpc.server:serve"},
                  {"grpcio": "targets.grpc.client:connect"},
                  gevent_setup="targets.grpc.gevent_compat:prepare_grpc_aio",
                  roles=(ROLE_ORDER, ROLE_PAYMENT, ROLE_INVENTORY), policy_parts=POLICY_PARTS),
        Transport("queue", "RabbitMQ through aio-pika: RPC lookups, confirmed commands, events",
                  {"aio-pika": "targets.queue.server:serve"},
                  {"aio-pika": "targets.queue.client:connect"},
                  broker=RABBITMQ, accepted_moment=True,
                  depth_queues="targets.queue.topology:depth_queues",
                  policy_parts=("timeouts", "bulkhead", "shed"),
                  roles=(ROLE_ORDER, ROLE_PAYMENT, ROLE_INVENTORY, ROLE_NOTIFICATION)),
        Transport("eventsourced", "event sourcing + CQRS: an order log on SQLite or PostgreSQL, "
                  "a projected read model, over the REST wire; an outbox publishes its events",
                  {"uvicorn": "targets.eventsourced.server:serve"},
                  {"aiohttp": "targets.eventsourced.client:connect",
                   "httpx": "targets.eventsourced.client:connect_httpx"},
                  broker=RABBITMQ, eventual_reads=True, temporal_query=True),
    )
}


def get_transport(name: str) -> Transport:
    try:
        return TRANSPORTS[name]
    except KeyError:
        raise KeyError(
            f"unknown target {name!r}; known targets: {', '.join(TRANSPORTS)}"
        ) from None


def resolve(ref: str) -> Any:
    """The object a "module:attribute" string names (imported on use)."""
    return _resolve(ref)


def _resolve(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)
