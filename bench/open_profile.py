"""Where an open loop's time goes, beside a closed loop, against the no-op app (issue 11).

One engine in this process (pinned to the load CPU, uvloop, as a generator process runs it),
the no-op app on granian pinned to the server CPU. Per run it prints the process's CPU per
request split into user and system time, voluntary context switches per request (how often
the loop went to sleep and had to be woken), the garbage collections during the run and
their pauses, and schedule lag. `--gc default` leaves CPython's collector as it comes, to see
what `harness/load/heap.py` changed; `--gc run` settles the heap as a generator process does.

Rates: `closed` (50 users, no think time), `think:N` (N closed-loop users thinking 1 ms between
requests: a closed loop that is not saturated) or a number (open loop, uniform arrivals).

Run: .venv/bin/python -m bench.open_profile --rates closed,4400,6100 [--gc default]
For a sampled profile, run it under py-spy (`pip install py-spy`; not a project dependency):
py-spy record -r 997 -f raw -o open.raw -- .venv/bin/python -m bench.open_profile --rates 4400
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from pathlib import Path

import uvloop

from bench.measure import _scenario, closed_scenario, merged, noop_server, open_scenario, pin
from harness.load.engine import EngineConfig, run_engine
from harness.load.recorder import SecondRecord, percentile_ms
from harness.scenario import Scenario
from targets.registry import get_transport


def switches() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches"):
            return int(line.split(":")[1])
    return 0


def scenario(rate: str, duration_s: float, warmup_s: float) -> Scenario:
    if rate == "closed":
        return closed_scenario(50, duration_s, warmup_s)
    if rate.startswith("think:"):
        return _scenario({"model": "closed", "users": int(rate[6:]), "think_time": "1ms",
                          "timeout": "5s"}, duration_s, warmup_s)
    return open_scenario(float(rate), duration_s, warmup_s)


async def one(url: str, sc: Scenario, variant: str, label: str) -> str:
    client = await get_transport("rest").client_factory(variant)(url, timeout=5.0)
    records: list[SecondRecord] = []
    t0 = time.monotonic_ns() + 100_000_000
    c0, v0 = os.times(), switches()
    try:
        stats = await run_engine(client, EngineConfig(sc, 0, 1, "profile"), t0, records.append)
    finally:
        c1, v1 = os.times(), switches()
        await client.close()
    t = merged(records)  # merging is the parent's work in a real run
    ok = t.histogram(("get",), "ok", "latency")
    n = ok.get_total_count()
    sent = n * (sc.duration_s + sc.warmup_s) / sc.duration_s  # CPU covers warm-up too
    user, system = ((c1.user - c0.user) * 1e6 / sent, (c1.system - c0.system) * 1e6 / sent)
    lag = t.lag if t.lag.get_total_count() else None
    lag_s = (f"lag p50/p99/max {percentile_ms(lag, 50):.2f}/{percentile_ms(lag, 99):.2f}/"
             f"{lag.get_max_value() / 1000:.1f} ms" if lag is not None else "lag –")
    g = getattr(stats, "gc", None)  # older engines lack it
    gc_s = (f"gc {g.collections} collections {g.total_ms:.1f} ms (max {g.max_ms:.1f})"
            if g is not None else "gc –")
    return (f"{label:>9}: {n / sc.duration_s:7,.0f} req/s, CPU {user + system:5.1f} µs/request "
            f"(user {user:5.1f}, system {system:4.1f}), {(v1 - v0) / sent:.2f} sleeps/request, "
            f"{gc_s}, {lag_s}, "
            f"latency p50/p99 {percentile_ms(ok, 50):.2f}/{percentile_ms(ok, 99):.2f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.open_profile",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="closed,think:6,4400,6100",
                    help="comma-separated: closed, think:N or requests/s")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--client", default="aiohttp", help="REST client variant")
    ap.add_argument("--gc", choices=("run", "default"), default="run")
    ap.add_argument("--load-cpu", type=int, default=0)
    ap.add_argument("--server-cpu", type=int, default=1)
    a = ap.parse_args()
    log = Path(tempfile.mkdtemp(prefix="commbench-open-profile-")) / "noop.log"
    with noop_server([a.server_cpu], log) as server:
        pin([a.load_cpu])
        print(f"open_profile: load on CPU {a.load_cpu}, no-op app on CPU {a.server_cpu}, "
              f"client {a.client}, gc {a.gc}; {a.warmup:g} s warm-up + {a.duration:g} s each")
        for rate in a.rates.split(","):
            if a.gc == "run":
                from harness.load.heap import settle_heap  # here: older engines lack it

                settle_heap()
            else:
                gc.unfreeze()
                gc.set_threshold(700, 10, 10)
            sc = scenario(rate, a.duration, a.warmup)
            line = uvloop.run(one(server.url, sc, a.client, rate))
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
