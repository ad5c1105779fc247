"""What every transport server shares: its configuration, binding a port with a clear error,
and the readiness line the launcher waits for (real synchronisation, no sleeps)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from targets.core.seed import SeedSpec
from targets.core.service import OrderService, build_service

READY_PREFIX = "COMMBENCH_READY "
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
# The launcher hands a server its broker URL here, not in argv, where ps shows passwords.
AMQP_URL_ENV = "COMMBENCH_AMQP_URL"


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


def announce_ready(transport: str, url: str) -> None:
    """One line on stdout: `COMMBENCH_READY {"transport": ..., "url": ..., "pid": ...}`."""
    line = json.dumps({"transport": transport, "url": url, "pid": os.getpid()})
    sys.stdout.write(READY_PREFIX + line + "\n")
    sys.stdout.flush()


def run_service(config: ServeConfig, main: Callable[[OrderService], Awaitable[None]]) -> None:
    """Build the order service, run `main(service)` on uvloop until it returns, and close the
    store on every path (a durable store checkpoints its WAL on close)."""
    import uvloop

    service = build_service(config.store, config.seed)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main(service))
    finally:
        service.store.close()
