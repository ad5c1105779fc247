"""The engine's own cost per request, with a client that answers at once (one loop pass), so
nothing but dispatch, request data and recording is measured. Closed loop (50 users) and
open loop at a fixed rate: CPU µs per request, and schedule lag for the open loop.

Run: .venv/bin/python -m bench.engine_cost [--rate 20000] [--duration 3] [--reps 3]
Compare engine versions by putting another copy of `harness/` first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable

import uvloop

from bench.measure import closed_scenario, merged, open_scenario, pin, run_queue_wait_s
from harness.load.engine import EngineConfig, run_engine
from harness.load.recorder import NS, SecondRecord, percentile_ms
from harness.scenario import Scenario
from targets.core.model import CreateOrder, Order


class NullClient:
    """Answers after one event-loop pass (an OrderClient that costs nothing)."""

    transport = "null"
    variant = "null"

    async def get_order(self, order_id: int) -> Order:
        await asyncio.sleep(0)
        return None  # type: ignore[return-value]

    async def list_user_orders(self, user_id: int, limit: int = 20) -> list[Order]:
        await asyncio.sleep(0)
        return []

    async def create_order(self, req: CreateOrder,
                           on_accepted: Callable[[], None] | None = None) -> Order:
        await asyncio.sleep(0)
        return None  # type: ignore[return-value]

    async def close(self) -> None:
        return None


async def one(sc: Scenario) -> dict[str, float]:
    records: list[SecondRecord] = []
    t0 = time.monotonic_ns() + 50_000_000
    c0, q0 = os.times(), run_queue_wait_s(os.getpid())
    await run_engine(NullClient(), EngineConfig(sc, 0, 1, "cost"), t0, records.append)
    c1, q1 = os.times(), run_queue_wait_s(os.getpid())
    wall = (time.monotonic_ns() - t0) / NS
    t = merged(records)  # merging is the parent's work in a real run
    measured = t.histogram(("get",), "ok", "latency").get_total_count()
    requests = measured * (sc.duration_s + sc.warmup_s) / sc.duration_s
    cpu = (c1.user + c1.system) - (c0.user + c0.system)
    lag = t.lag if t.lag.get_total_count() else None
    return {"rps": measured / sc.duration_s, "us_per_req": 1e6 * cpu / requests,
            "cpu": 100 * cpu / wall, "waited": 100 * (q1 - q0) / wall,
            "achieved": t.started / t.intended if t.intended else 1.0,
            "lag_p50": percentile_ms(lag, 50) or 0.0, "lag_p99": percentile_ms(lag, 99) or 0.0}


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.engine_cost",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=20000.0, help="open-loop requests/s")
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cpu", type=int, default=0)
    args = ap.parse_args()
    pin([args.cpu])
    cases = (("closed", closed_scenario(args.users, args.duration, args.warmup)),
             (f"open {args.rate:,.0f}/s", open_scenario(args.rate, args.duration, args.warmup)))
    for name, sc in cases:
        runs = [uvloop.run(one(sc)) for _ in range(args.reps)]
        for r in runs:
            print(f"  {name}: {r['rps']:,.0f} req/s, {r['us_per_req']:.2f} CPU µs/request, "
                  f"CPU {r['cpu']:.0f} %, waited {r['waited']:.1f} %, achieved "
                  f"{r['achieved']:.2%}, lag p50/p99 {r['lag_p50']:.3f}/{r['lag_p99']:.3f} ms")
        med = statistics.median(r["us_per_req"] for r in runs)
        print(f"{name}: median {med:.2f} CPU µs per request (engine only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
