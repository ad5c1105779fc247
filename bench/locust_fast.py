"""locust FastHttpUser on the no-op endpoint, headless, one process, for comparison with the
engine's own ceiling. Prints one line `LOCUST {json}`: requests/s and this process's CPU %
over the measured window (statistics reset when the warm-up ends), p50/p99 in ms.

Run: python -m bench.locust_fast --host http://127.0.0.1:PORT --users 50 --duration 5
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time

import gevent
from locust import FastHttpUser, constant, task
from locust.env import Environment

ORDERS = 1000  # the engine's data set: users × orders per user (bench.measure.DATA)


class OrderLookup(FastHttpUser):
    """The engine's closed-loop workload: get a random order of the data set, no think time."""

    wait_time = constant(0)

    @task
    def get_order(self) -> None:
        self.client.get(f"/orders/{random.randint(1, ORDERS)}", name="/orders/{id}")


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", required=True)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--duration", type=float, default=5.0)
    args = ap.parse_args()

    env = Environment(user_classes=[OrderLookup], host=args.host)
    runner = env.create_local_runner()
    runner.start(args.users, spawn_rate=args.users)
    gevent.sleep(args.warmup)
    env.stats.reset_all()
    t0, c0 = time.monotonic(), cpu_s()
    gevent.sleep(args.duration)
    total = env.stats.total
    n, wall, cpu = total.num_requests, time.monotonic() - t0, cpu_s() - c0
    p50, p99 = total.get_response_time_percentile(0.5), total.get_response_time_percentile(0.99)
    failures = total.num_failures
    runner.quit()
    print("LOCUST " + json.dumps({"rps": n / wall, "cpu": 100 * cpu / wall, "p50_ms": p50,
                                  "p99_ms": p99, "failures": failures, "requests": n}),
          flush=True)


if __name__ == "__main__":
    main()
