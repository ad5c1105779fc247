"""What the three-service chain costs a create, per transport (prints figures; not a test):
the order service alone (topology single) against the edge with its payment and inventory
services (topology chain; on the queue the choreography saga with a notification service).

Per transport and topology: the services are started through harness.stage.launcher (every store
SQLite, WAL, as in the order-creation scenario; all services pinned to one CPU, this process
to the other), then N sequential creates through the project's client after a warm-up; every
create is a paying user's in-stock order, so the chain confirms each one. Reports latency
percentiles (for the queue also *accepted*, the broker's confirm of the command) and the CPU
seconds of every service process (psutil, process trees) per create, the broker's apart.
Before measuring it waits (at most 30 s) for both CPUs to be quiet and prints how busy they
were: the machine is shared.
A chain run ends with a reconciliation of its stores, which must be clean.

Run: .venv/bin/python -m bench.chain_cost [-n 500] [--warmup 50] [--transports rest,grpc,queue]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import uvloop

from bench.measure import wait_quiet
from harness.run.probes import ProcessProbe
from harness.stage.broker import broker_pids, delete_namespace, ensure_broker
from harness.stage.launcher import Launcher, Service
from targets.core.model import STATUS_CONFIRMED, CreateOrder, ItemRequest
from targets.core.seed import SeedSpec
from targets.flow.outcomes import in_stock_skus, paying_user
from targets.flow.plan import stand_up, store_path
from targets.flow.reconcile import reconcile_folder
from targets.registry import TRANSPORTS, get_transport
from targets.serving import DEFAULT_AMQP_URL, ServeConfig

SEED = SeedSpec(users=100, orders_per_user=10, seed=1)
TOPOLOGIES = ("single", "chain")
QUIET_BUSY, QUIET_WAIT_S = 15.0, 30.0  # wait (at most 30 s) for both CPUs under 15 % busy
mono = time.monotonic_ns


@dataclass
class Row:
    transport: str
    topology: str
    n: int
    completed_ns: list[int]
    accepted_ns: list[int]
    service_cpu_s: dict[str, float]  # by role
    broker_cpu_s: float | None
    client_cpu_s: float
    busy_before: float  # max busy % of the two CPUs just before measuring (a shared machine)
    reconciliation: list[str] = field(default_factory=list)  # problems; empty when clean

    def per_request_us(self, seconds: float) -> float:
        return seconds / self.n * 1e6


def quantile(values_ns: list[int], q: float) -> float:
    """Nearest-rank quantile in ms."""
    s = sorted(values_ns)
    k = max(0, min(len(s) - 1, round(q * len(s) + 0.5) - 1))
    return s[k] / 1e6


def _request(run: str, i: int) -> CreateOrder:
    skus = in_stock_skus(SEED)
    return CreateOrder(f"cc-{run}-{i}", paying_user(SEED, 10_000 + i % 200),
                       (ItemRequest(skus[i % len(skus)], 1 + i % 3), ItemRequest(skus[0], 1)))


async def measure(transport: str, url: str, n: int, warmup: int, probes: dict[str, ProcessProbe],
                  broker: ProcessProbe | None) -> tuple[list[int], list[int], dict[str, float],
                                                        float | None, float]:
    client = await get_transport(transport).client_factory()(url, timeout=10)
    run = uuid.uuid4().hex[:8]
    completed: list[int] = []
    accepted: list[int] = []
    try:
        for i in range(warmup):
            await client.create_order(_request(f"{run}w", i))
        cpu0 = {role: p.sample()[0] for role, p in probes.items()}
        broker0 = broker.sample()[0] if broker else 0.0
        client0 = time.process_time()
        for i in range(n):
            moment: list[int] = []
            t = mono()
            order = await client.create_order(_request(run, i), on_accepted=lambda m=moment: m.append(mono()))
            completed.append(mono() - t)
            if transport == "queue" and moment:
                accepted.append(moment[0] - t)
            if order.status not in (STATUS_CONFIRMED, "created"):
                raise RuntimeError(f"create {i} ended {order.status!r}")
        client_s = time.process_time() - client0
        cpu = {role: p.sample()[0] - cpu0[role] for role, p in probes.items()}
        broker_s = broker.sample()[0] - broker0 if broker else None
    finally:
        await client.close()
    return completed, accepted, cpu, broker_s, client_s


def run_one(transport: str, topology: str, args: argparse.Namespace, amqp_url: str,
            folder: Path) -> Row:
    namespace = f"bench-cc-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    base = ServeConfig(amqp_url=amqp_url, namespace=namespace, seed=SEED)
    services: dict[str, Service] = {}
    try:
        with Launcher(folder / "logs") as launcher:
            def start(role: str, config: ServeConfig) -> str:
                services[role] = launcher.start(transport, config, name=f"{transport}-{role}",
                                                cpus=[args.server_cpu])
                return services[role].url

            if topology == "single":
                folder.mkdir(parents=True, exist_ok=True)
                start("order", dataclasses.replace(base, store=f"sqlite:{store_path(folder, 'order')}"))
            else:
                stand_up(transport, base, folder, start)
            probes = {role: ProcessProbe([s.pid]) for role, s in services.items()}
            bpids = broker_pids(amqp_url) if (get_transport(transport).broker is not None) else None
            broker = ProcessProbe(bpids) if bpids else None
            busy = wait_quiet([args.load_cpu, args.server_cpu], QUIET_BUSY, QUIET_WAIT_S)
            completed, accepted, cpu, broker_s, client_s = uvloop.run(measure(
                transport, services["order"].url, args.n, args.warmup, probes, broker))
    finally:
        if (get_transport(transport).broker is not None):
            delete_namespace(amqp_url, namespace)
    problems = reconcile_folder(folder).problems() if topology == "chain" else []
    return Row(transport, topology, args.n, completed, accepted, cpu, broker_s, client_s, busy,
               problems)


def figures(r: Row) -> dict[str, float | None]:
    """One run's figures: latency in ms, CPU in µs per create, busy in %."""
    return {
        "p50": quantile(r.completed_ns, 0.5), "p99": quantile(r.completed_ns, 0.99),
        "acc_p50": quantile(r.accepted_ns, 0.5) if r.accepted_ns else None,
        "acc_p99": quantile(r.accepted_ns, 0.99) if r.accepted_ns else None,
        "services": r.per_request_us(sum(r.service_cpu_s.values())),
        "broker": r.per_request_us(r.broker_cpu_s) if r.broker_cpu_s is not None else None,
        "client": r.per_request_us(r.client_cpu_s), "busy": r.busy_before,
        **{f"cpu {role}": r.per_request_us(s) for role, s in r.service_cpu_s.items()},
    }


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _cell(value: float | None, width: int, digits: int) -> str:
    return f"{'–':>{width}}" if value is None else f"{value:{width}.{digits}f}"


def print_table(title: str, rows: list[tuple[str, str, dict[str, float | None]]]) -> None:
    print(title)
    head = (f"{'transport':9} {'topology':8} {'create p50':>10} {'p99 ms':>8} {'accepted p50':>12} "
            f"{'p99 ms':>8} {'services µs/req':>15} {'broker µs/req':>13} {'client µs/req':>13} "
            f"{'busy before':>11}")
    print(head)
    print("-" * len(head))
    for transport, topology, f in rows:
        print(f"{transport:9} {topology:8} {_cell(f['p50'], 10, 3)} {_cell(f['p99'], 8, 3)} "
              f"{_cell(f['acc_p50'], 12, 3)} {_cell(f['acc_p99'], 8, 3)} "
              f"{_cell(f['services'], 15, 0)} {_cell(f['broker'], 13, 0)} "
              f"{_cell(f['client'], 13, 0)} {_cell(f['busy'], 10, 0)}%")
    print()


def summary(rows: list[Row]) -> list[tuple[str, str, dict[str, float | None]]]:
    """The median of each figure over the repetitions, per transport and topology."""
    groups: dict[tuple[str, str], list[dict[str, float | None]]] = {}
    for r in rows:
        groups.setdefault((r.transport, r.topology), []).append(figures(r))
    return [(t, topo, {k: _median([f.get(k) for f in fs]) for k in fs[0]})
            for (t, topo), fs in groups.items()]


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.chain_cost", description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=500, help="measured creates per transport and topology")
    ap.add_argument("--warmup", type=int, default=50, help="warm-up creates")
    chained = [t for t in TRANSPORTS if get_transport(t).serves_chain]
    ap.add_argument("--transports", default=",".join(chained),
                    help=f"transports that serve the chain (default: {', '.join(chained)})")
    ap.add_argument("--load-cpu", type=int, default=0)
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--amqp-url", default=DEFAULT_AMQP_URL)
    ap.add_argument("--reps", type=int, default=3, help="repetitions (figures: their median)")
    ap.add_argument("--json", type=Path, help="also write every figure here")
    args = ap.parse_args()
    transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    for t in transports:
        if not get_transport(t).serves_chain:
            print(f"{t} does not serve the chain topology (choose from {', '.join(chained)})",
                  file=sys.stderr)
            return 2
    cpus = sorted(os.sched_getaffinity(0))
    if {args.load_cpu, args.server_cpu} - set(cpus) or args.load_cpu == args.server_cpu:
        print(f"need two distinct CPUs among {cpus}", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {args.load_cpu})
    root = Path(tempfile.mkdtemp(prefix="commbench-chain-cost-"))
    print(f"chain cost: {args.n} sequential creates after {args.warmup} warm-up ones; client on "
          f"CPU {args.load_cpu}, every service on CPU {args.server_cpu} (broker not pinned); "
          f"stores and logs in {root}")
    rows: list[Row] = []
    with ExitStack() as stack:
        needs_broker = any((get_transport(t).broker is not None) for t in transports)
        amqp_url = stack.enter_context(ensure_broker(args.amqp_url)).url if needs_broker else args.amqp_url
        for rep in range(args.reps):
            for transport in transports:
                # Alternate which topology goes first, so neither always gets the quieter slot.
                for topology in TOPOLOGIES if rep % 2 == 0 else TOPOLOGIES[::-1]:
                    print(f"  rep {rep + 1}: {transport} {topology} …", flush=True)
                    rows.append(run_one(transport, topology, args, amqp_url,
                                        root / f"{transport}-{topology}-{rep + 1}"))
    print()
    per_rep = len(transports) * len(TOPOLOGIES)
    for rep in range(args.reps):
        print_table(f"repetition {rep + 1}", [(r.transport, r.topology, figures(r))
                                              for r in rows[rep * per_rep:(rep + 1) * per_rep]])
    med = summary(rows)
    print_table(f"median of {args.reps} repetitions", med)
    for transport, topology, f in med:
        if topology == "chain":
            split = ", ".join(f"{k.removeprefix('cpu ')} {v:.0f}" for k, v in f.items()
                              if k.startswith("cpu ") and v is not None)
            print(f"{transport} chain, service CPU µs/req by role (median): {split}")
    bad = [f"{r.transport} chain: {'; '.join(r.reconciliation)}" for r in rows if r.reconciliation]
    print("reconciliation of every chain run: " + ("clean" if not bad else " | ".join(bad)))
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in rows]))
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
