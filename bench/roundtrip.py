"""One request's round trip on each transport, through the project's clients (prints figures;
not a test): N sequential calls after a warm-up, median / p90 / p99 per transport.

get_order on every transport (REST via aiohttp and via httpx, gRPC, queue); create_order on
every transport too, and for the queue both of its moments: *accepted* (broker confirm) and
*completed* (the order's event reached the client). Server pinned to one CPU, this process
to the other.

Run: .venv/bin/python -m bench.roundtrip [-n 500] [--warmup 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import uvloop

from harness.stage.broker import delete_namespace, ensure_broker
from harness.stage.launcher import Launcher
from targets.core.model import CreateOrder, ItemRequest
from targets.core.seed import SeedSpec
from targets.registry import get_transport
from targets.serving import DEFAULT_AMQP_URL, ServeConfig

SEED = SeedSpec(users=100, orders_per_user=10, seed=1)
ROWS = (("rest", "aiohttp"), ("rest", "httpx"), ("grpc", "grpcio"), ("queue", "aio-pika"))
mono = time.monotonic_ns


def quantile(sorted_ns: list[int], q: float) -> float:
    """Nearest-rank quantile in ms."""
    k = max(0, min(len(sorted_ns) - 1, round(q * len(sorted_ns) + 0.5) - 1))
    return sorted_ns[k] / 1e6


async def measure(transport: str, variant: str, url: str, n: int, warmup: int
                  ) -> dict[str, list[int]]:
    """ns per call for each measured operation."""
    client = await get_transport(transport).client_factory(variant)(url, timeout=10)
    run = uuid.uuid4().hex[:8]
    orders = SEED.users * SEED.orders_per_user
    out: dict[str, list[int]] = {"get_order": [], "create (completed)": []}
    if transport == "queue":
        out["create (accepted)"] = []
    try:
        for i in range(warmup):
            await client.get_order(1 + i % orders)
            await client.create_order(_create(f"rt-{run}-w{i}", i))
        for i in range(n):
            t = mono()
            await client.get_order(1 + (i * 7919) % orders)
            out["get_order"].append(mono() - t)
        for i in range(n):
            accepted: list[int] = []
            t = mono()
            await client.create_order(_create(f"rt-{run}-{i}", i),
                                      on_accepted=lambda a=accepted: a.append(mono()))
            done = mono()
            out["create (completed)"].append(done - t)
            if transport == "queue" and accepted:
                out["create (accepted)"].append(accepted[0] - t)
    finally:
        await client.close()
    return out


def _create(request_id: str, i: int) -> CreateOrder:
    return CreateOrder(request_id=request_id, user_id=1 + i % SEED.users,
                       items=(ItemRequest("SKU-001", 1 + i % 3), ItemRequest("SKU-004", 1)))


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.roundtrip",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=500, help="measured calls per operation")
    ap.add_argument("--warmup", type=int, default=50, help="warm-up calls per operation")
    ap.add_argument("--load-cpu", type=int, default=0)
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--amqp-url", default=DEFAULT_AMQP_URL)
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    if {args.load_cpu, args.server_cpu} - set(cpus) or args.load_cpu == args.server_cpu:
        print(f"need two distinct CPUs among {cpus}", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {args.load_cpu})
    logs = Path(tempfile.mkdtemp(prefix="commbench-roundtrip-"))
    print(f"round trip: {args.n} sequential calls per operation after {args.warmup} warm-up "
          f"calls; client on CPU {args.load_cpu}, server on CPU {args.server_cpu}")
    results: list[tuple[str, str, str, list[int]]] = []
    namespace = f"bench-rt-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    with ExitStack() as stack:
        broker = stack.enter_context(ensure_broker(args.amqp_url))
        launcher = stack.enter_context(Launcher(logs))
        servers: dict[str, str] = {}
        try:
            for transport, variant in ROWS:
                if transport not in servers:
                    cfg = ServeConfig(amqp_url=broker.url, namespace=namespace, seed=SEED)
                    servers[transport] = launcher.start(transport, cfg,
                                                        cpus=[args.server_cpu]).url
                print(f"  {transport} ({variant}) …", flush=True)
                figures = uvloop.run(measure(transport, variant, servers[transport], args.n,
                                             args.warmup))
                results += [(transport, variant, op, sorted(v)) for op, v in figures.items()]
        finally:
            launcher.stop_all()
            delete_namespace(broker.url, namespace)
    print()
    head = f"{'transport':10} {'client':9} {'operation':20} {'n':>5} {'median ms':>10} " \
           f"{'p90 ms':>8} {'p99 ms':>8}"
    print(head)
    print("-" * len(head))
    for transport, variant, op, v in results:
        if not v:
            continue
        print(f"{transport:10} {variant:9} {op:20} {len(v):5} {statistics.median(v) / 1e6:10.3f} "
              f"{quantile(v, 0.90):8.3f} {quantile(v, 0.99):8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
