"""The saturation flag on a real run whose generator lags on purpose: one request in flight
(`in_flight = 1`) and Poisson arrivals at a tenth of what one connection serves. Each
request waits for the one before it, so the schedule lag is queueing in the generator (a
single-server queue: lag p99 around one service time or more, a large share of the latency
p99) while every request still goes out. The rate is set from the service time measured just
before (median of sequential calls), so the utilisation does not depend on the machine.

Not deterministic on a shared machine, and so asserted in two parts: the run is always
flagged, and whenever the old rule (achieved < 99 % or lag p99 > 10 ms) would have passed it,
the lag-to-latency clause is what flagged it. Which case a run lands in depends on the
machine: another process holding a CPU for 30 ms of the 3 s window (1 %) puts the lag p99
above 10 ms by itself, and on a busy 2-core machine that is common. The deterministic check
of the clause on real histograms is tests/test_window.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time

from targets.core.seed import SeedSpec
from targets.registry import get_transport
from targets.serving import ServeConfig
from tests.conftest import run

SEED = SeedSpec(users=20, orders_per_user=5)
UTILISATION = 0.1
SCENARIO = """
name = "lagging"
description = "one request in flight: the generator's own queue is the lag"
targets = ["rest"]
duration = "3s"
warmup = "500ms"

[data]
users = {users}
orders_per_user = {per_user}

[load]
rate = {rate}
arrival = "poisson"
in_flight = 1
timeout = "5s"

[operations]
get = 1
"""


async def _service_time_s(url: str, calls: int = 300) -> float:
    """Median seconds of one lookup through the default REST client, calls one at a time."""
    client = await get_transport("rest").client_factory()(url, timeout=5)
    times = []
    try:
        for k in range(calls):
            t0 = time.perf_counter()
            await asyncio.wait_for(client.get_order(k % SEED.total + 1), 5)
            times.append(time.perf_counter() - t0)
    finally:
        await client.close()
    return statistics.median(times[calls // 10:])  # the first calls open the connection


def test_a_generator_lagging_behind_its_own_in_flight_bound_is_flagged(launcher, tmp_path):
    svc = launcher.start("rest", ServeConfig(seed=SEED))
    service_s = run(_service_time_s(svc.url))
    rate = round(min(2000.0, max(20.0, UTILISATION / service_s)))
    path = tmp_path / "lagging.toml"
    path.write_text(SCENARIO.format(users=SEED.users, per_user=SEED.orders_per_user, rate=rate))
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(path), "--url", f"rest={svc.url}",
         "--results-dir", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = (tmp_path / "results").iterdir()
    meta = json.loads((run_dir / "run.json").read_text())
    (target,) = meta["targets"]
    (warning,) = [w for w in meta["warnings"] if w.startswith("generator saturated on rest ")]
    context = f"service {service_s * 1e3:.2f} ms, rate {rate}/s: {warning}"
    assert target["saturated"], context
    m = re.search(r"achieved (\d+)% of the intended rate, schedule lag p99 ([\d.]+) ms", warning)
    assert m, context
    achieved, lag_ms = int(m.group(1)), float(m.group(2))
    tail = warning.split("flagged because ", 1)[1]
    hint = (r"; \d+ CPU\(s\) not given to targets ran 1 generator process\(es\): "
            r"more \(--processes auto: \d+\) may keep up$")
    # every target reached by URL: each CPU is free of targets, and the one process says so
    if len(os.sched_getaffinity(0)) >= 2:
        assert re.search(hint, tail), context
    reasons = re.sub(hint, "", tail)
    share = r"lag p99 is \d+% of the latency p99 [\d.]+ ms \(20% or more\)"
    if achieved >= 99 and lag_ms <= 10:  # the old rule would have passed this run
        assert re.fullmatch(share, reasons), context  # one reason: the new clause
    print(f"\n{context}")  # which case this run was (pytest -s)
    assert meta["generator"]["saturation_rule"].startswith("achieved < 99% of intended, or "
                                                           "schedule lag p99 > 10 ms, or lag p99")
