"""What every transport server shares: its configuration, binding a port with a clear error,
and the readiness line the launcher waits for (real synchronisation, no sleeps)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from targets.core.seed import SeedSpec
from targets.core.service import OrderService, build_service

READY_PREFIX = "COMMBENCH_READY "
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
# The launcher hands a server its broker URL here, not in argv, where ps shows passwords.
AMQP_URL_ENV = "COMMBENCH_AMQP_URL"


# The services of the order flow. `order` is the edge clients call; the others are its
# downstreams. A transport lists the roles it serves in the registry.
ROLE_ORDER = "order"
ROLE_PAYMENT = "payment"
ROLE_INVENTORY = "inventory"
ROLE_NOTIFICATION = "notification"
ROLES = (ROLE_ORDER, ROLE_PAYMENT, ROLE_INVENTORY, ROLE_NOTIFICATION)
# single: the order service alone (the first slice); chain: the edge depends on payment and
# inventory (synchronous calls for REST and gRPC, a choreography saga on the broker).
TOPOLOGY_SINGLE = "single"
TOPOLOGY_CHAIN = "chain"
TOPOLOGIES = (TOPOLOGY_SINGLE, TOPOLOGY_CHAIN)
DEFAULT_HOP_TIMEOUT_S = 2.0


class ServeError(Exception):
    """A server cannot start for a reason the user can fix (port in use, no broker)."""


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: the OS picks a free port, announced in the ready line
    store: str = "memory"
    amqp_url: str = DEFAULT_AMQP_URL
    namespace: str = "commbench"  # prefixes queue and exchange names on the broker
    seed: SeedSpec = field(default_factory=SeedSpec)
    role: str = ROLE_ORDER
    topology: str = TOPOLOGY_SINGLE
    # (role, URL) pairs: where a chain edge reaches its downstreams. Pairs, not a dict, so the
    # frozen config stays hashable. The queue needs none (everything meets on the broker).
    downstreams: tuple[tuple[str, str], ...] = ()
    hop_timeout_s: float = DEFAULT_HOP_TIMEOUT_S  # per downstream call of a synchronous chain
    # A Unix socket path: serve the fault control channel there (targets/control.py); "" none.
    control: str = ""
    # A chain edge's resilience policies, as JSON (targets/policy/config.py); "" none.
    policies: str = ""

    def downstream(self, role: str) -> str:
        """The URL of downstream `role`; ServeError when the chain was not given one."""
        for name, url in self.downstreams:
            if name == role:
                return url
        raise ServeError(f"the {self.topology} edge needs --downstream {role}=URL")


def parse_downstream(value: str) -> tuple[str, str]:
    """"payment=http://127.0.0.1:8001" → ("payment", URL); ValueError with a one-line reason."""
    role, sep, url = value.partition("=")
    role, url = role.strip(), url.strip()
    if not sep or not role or not url:
        raise ValueError(f"--downstream takes ROLE=URL, got {value!r}")
    if role not in ROLES or role == ROLE_ORDER:
        raise ValueError(f"--downstream {value!r}: unknown downstream role {role!r}; "
                         f"choose one of: {', '.join(r for r in ROLES if r != ROLE_ORDER)}")
    return role, url


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(
                f"port {port} on {host} is in use: choose another with --port, or stop what holds it"
            ) from None
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def announce_ready(transport: str, url: str, role: str = ROLE_ORDER) -> None:
    """One line on stdout: `COMMBENCH_READY {"transport": ..., "url": ..., "pid": ..., "role": ...}`."""
    line = json.dumps({"transport": transport, "url": url, "pid": os.getpid(), "role": role})
    sys.stdout.write(READY_PREFIX + line + "\n")
    sys.stdout.flush()


def run_service(config: ServeConfig, main: Callable[[OrderService], Awaitable[None]]) -> None:
    """Build the order service, run `main(service)` on uvloop until it returns, and close the
    store on every path (a durable store checkpoints its WAL on close)."""
    async def body() -> None:
        service = await build_service(config.store, config.seed)
        try:
            await main(service)
        finally:
            await service.store.close()

    run_on_uvloop(body())


def run_on_uvloop(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` on a fresh uvloop loop until it returns (every server's event loop)."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def check_role(config: ServeConfig, transport: str, roles: tuple[str, ...]) -> None:
    """ServeError unless `transport` serves `config.role` in `config.topology`."""
    if config.role not in roles:
        raise ServeError(f"{transport} serves the roles {', '.join(roles)}, not {config.role!r}")
    if config.topology not in TOPOLOGIES:
        raise ServeError(f"unknown topology {config.topology!r}; choose one of: {', '.join(TOPOLOGIES)}")
