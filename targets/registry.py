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
class Transport:
    name: str
    description: str
    server: str  # "module:function", function(ServeConfig) runs until SIGTERM/SIGINT
    clients: dict[str, str]  # variant name → "module:async factory(url, timeout=)"
    needs_broker: bool = False
    # The services `serve` can run (ServeConfig.role); the first is the edge clients call.
    roles: tuple[str, ...] = (ROLE_ORDER,)

    @property
    def default_client(self) -> str:
        return next(iter(self.clients))

    def serve(self) -> Callable[[ServeConfig], None]:
        return _resolve(self.server)

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
        Transport("rest", "HTTP/JSON: FastAPI on uvicorn (uvloop, httptools)",
                  "targets.rest.server:serve",
                  {"aiohttp": "targets.rest.client_aiohttp:connect",
                   "httpx": "targets.rest.client_httpx:connect"},
                  roles=(ROLE_ORDER, ROLE_PAYMENT, ROLE_INVENTORY)),
        Transport("grpc", "gRPC: protobuf over HTTP/2, grpc.aio",
                  "targets.grpc.server:serve",
                  {"grpcio": "targets.grpc.client:connect"},
                  roles=(ROLE_ORDER, ROLE_PAYMENT, ROLE_INVENTORY)),
        Transport("queue", "RabbitMQ through aio-pika: RPC lookups, confirmed commands, events",
                  "targets.queue.server:serve",
                  {"aio-pika": "targets.queue.client:connect"},
                  needs_broker=True,
                  roles=(ROLE_ORDER, ROLE_PAYMENT, ROLE_INVENTORY, ROLE_NOTIFICATION)),
    )
}


def get_transport(name: str) -> Transport:
    try:
        return TRANSPORTS[name]
    except KeyError:
        raise KeyError(
            f"unknown target {name!r}; known targets: {', '.join(TRANSPORTS)}"
        ) from None


def _resolve(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)
