"""Bytes on the wire per operation, each transport through the project's clients (prints
figures; not a test). A counting TCP relay on loopback sits between the client and what it
talks to (the REST or gRPC server; for the queue, the broker), and for the queue a second one
between the order service and the broker, since a queued request crosses the broker twice.
Everything the sockets carry counts: headers, framing, protobuf or JSON bodies, AMQP frames
and properties (TLS is not used here). Each figure is the mean over N calls after a warm-up
that opened the connections, so connection set-up is not in it.

Run: .venv/bin/python -m bench.wire_bytes [-n 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import uvloop

from harness.stage.broker import delete_namespace, ensure_broker
from harness.stage.launcher import Launcher
from targets.core.model import CreateOrder, ItemRequest
from targets.core.seed import SeedSpec
from targets.registry import get_transport
from targets.serving import DEFAULT_AMQP_URL, ServeConfig

SEED = SeedSpec(users=100, orders_per_user=10, seed=1)
ROWS = (("rest", "aiohttp"), ("rest", "httpx"), ("grpc", "grpcio"), ("queue", "aio-pika"))
OPS = ("noop", "get", "list (20)", "create")


@dataclass
class Relay:
    """Forwards loopback TCP to `target`, counting the bytes each way."""

    target: tuple[str, int]
    up: int = 0  # toward the target
    down: int = 0  # back to the caller
    server: asyncio.AbstractServer | None = field(default=None, repr=False)

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        tr, tw = await asyncio.open_connection(*self.target)
        with contextlib.suppress(asyncio.CancelledError):  # the measurement's loop ended
            await asyncio.gather(self._pipe(r, tw, "up"), self._pipe(tr, w, "down"),
                                 return_exceptions=True)

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, way: str) -> None:
        try:
            while data := await r.read(65536):
                setattr(self, way, getattr(self, way) + len(data))
                w.write(data)
                await w.drain()
        finally:
            w.close()

    def reset(self) -> tuple[int, int]:
        out = (self.up, self.down)
        self.up = self.down = 0
        return out


def _via(url: str, port: int) -> str:
    """`url` with its host:port replaced by the relay's."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


async def measure(transport: str, variant: str, url: str, relays: list[Relay], n: int
                  ) -> dict[str, list[tuple[int, int]]]:
    """Per operation, (up, down) bytes per call on each relay."""
    client = await get_transport(transport).client_factory(variant)(url, timeout=10)
    run = uuid.uuid4().hex[:8]
    calls = {
        "noop": lambda i: client.noop(),
        "get": lambda i: client.get_order(1 + i % (SEED.users * SEED.orders_per_user)),
        "list (20)": lambda i: client.list_user_orders(1 + i % SEED.users, 20),
        "create": lambda i: client.create_order(CreateOrder(
            f"wb-{run}-{i}", 1 + i % SEED.users, (ItemRequest("SKU-001", 1), ItemRequest("SKU-004", 2)))),
    }
    out: dict[str, list[tuple[int, int]]] = {}
    try:
        for op, call in calls.items():
            for i in range(5):  # warm-up: connections and channels open, caches filled
                await call(10_000 + i)
            await asyncio.sleep(0.2)  # let late frames of the warm-up (confirms, events) land
            for relay in relays:
                relay.reset()
            for i in range(n):
                await call(i)
            await asyncio.sleep(0.2)  # the last calls' trailing frames (acks) counted too
            out[op] = [(up // n, down // n) for up, down in (r.reset() for r in relays)]
    finally:
        await client.close()
    return out


async def one(transport: str, variant: str, launcher: Launcher, broker_url: str,
              namespace: str, n: int) -> dict[str, list[tuple[int, int]]]:
    """Start the transport's server behind relays and measure its client through them."""
    if transport == "queue":  # client → broker, and order service → broker
        b = urlsplit(broker_url)
        client_leg = Relay((b.hostname or "127.0.0.1", b.port or 5672))
        service_leg = Relay((b.hostname or "127.0.0.1", b.port or 5672))
        cport, sport = await client_leg.start(), await service_leg.start()
        cfg = ServeConfig(amqp_url=_via(broker_url, sport), namespace=namespace, seed=SEED)
        svc = await asyncio.to_thread(launcher.start, "queue", cfg)
        return await measure(transport, variant, _via(svc.url, cport),
                             [client_leg, service_leg], n)
    svc = await asyncio.to_thread(launcher.start, transport, ServeConfig(seed=SEED))
    u = urlsplit(svc.url)
    relay = Relay((u.hostname or "127.0.0.1", u.port or 0))
    port = await relay.start()
    return await measure(transport, variant, _via(svc.url, port), [relay], n)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.wire_bytes",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200, help="measured calls per operation")
    ap.add_argument("--amqp-url", default=DEFAULT_AMQP_URL)
    args = ap.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="commbench-wire-"))
    namespace = f"bench-wb-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    rows: list[tuple[str, str, str, list[tuple[int, int]]]] = []
    with ExitStack() as stack:
        broker = stack.enter_context(ensure_broker(args.amqp_url))
        launcher = stack.enter_context(Launcher(logs))
        try:
            for transport, variant in ROWS:
                print(f"  {transport} ({variant}) …", flush=True)

                rows += [(transport, variant, op, legs)
                         for op, legs in uvloop.run(one(transport, variant, launcher, broker.url,
                                                        namespace, args.n)).items()]
                launcher.stop_all()
        finally:
            launcher.stop_all()
            delete_namespace(broker.url, namespace)
    print(f"\nbytes per call, mean of {args.n} calls after a warm-up (request → / ← answer)")
    head = f"{'transport':10} {'client':9} {'operation':10} {'request B':>10} {'answer B':>10} " \
           f"{'total B':>8}  note"
    print(head)
    print("-" * len(head))
    for transport, variant, op, legs in rows:
        up, down = legs[0]
        note = ""
        if len(legs) > 1:
            s_up, s_down = legs[1]
            note = (f"+ order service ↔ broker {s_down} → / ← {s_up} B "
                    f"(total across the broker {up + down + s_up + s_down} B)")
        print(f"{transport:10} {variant:9} {op:10} {up:10} {down:10} {up + down:8}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
