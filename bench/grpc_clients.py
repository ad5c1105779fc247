"""What each arrangement of the Python gRPC client costs the load core (issue 11 item 3).

The project's gRPC server runs pinned to one CPU; for each client arrangement a child
process pinned to the other CPU runs a closed loop of N concurrent callers (get_order,
random ids of the seeded 1,000 orders, on uvloop as the engine's workers do) and reports
requests/s, requests per load-core-second (the robust figure on a shared machine: a lost
core slows a run down but does not make a request cheaper), client CPU µs per request
(every thread of the process: grpc's C-core threads included), p50/p99, and the time its
event-loop thread waited for its CPU (held by other processes or its own grpc threads).
Before its window each child checks its answers: every seeded order read through it equals
the default client's, and a missing id raises NotFound. --reps runs per arrangement, the
order rotating each repetition; the median run by requests per load core is shown.

Run: .venv/bin/python -m bench.grpc_clients [--duration 4] [--reps 3] [--variants a,b]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import DATA, ROOT, kill_group, pin, wait_quiet

ORDERS = DATA["users"] * DATA["orders_per_user"]
TAG = "GRPCC"
QUIET_BUSY_PCT = 15.0


@dataclass(frozen=True)
class Variant:
    name: str
    factory: str  # "module:async connect(url, timeout=, **kwargs)"
    kwargs: tuple[tuple[str, Any], ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    about: str = ""


V = "bench.grpc_variants"
VARIANTS = {v.name: v for v in (
    Variant("aio-1ch", "targets.grpc.client:connect", about="today's client: grpc.aio, one channel"),
    Variant("aio-2ch", f"{V}:connect_pool", (("channels", 2),),
            about="grpc.aio, 2 channels (local subchannel pools), round-robin"),
    Variant("aio-4ch", f"{V}:connect_pool", (("channels", 4),), about="as above, 4 channels"),
    Variant("aio-lean", f"{V}:connect_options",
            about="grpc.aio, one channel, retries / BDP probe / proxy lookup off"),
    Variant("aio-poll", "targets.grpc.client:connect", env=(("GRPC_POLL_STRATEGY", "poll"),),
            about="today's client with GRPC_POLL_STRATEGY=poll (default epoll1)"),
    Variant("sync-future", f"{V}:connect_sync_future",
            about="sync channel and stub, .future() calls completed on the event loop"),
)}


# child: one closed-loop run -------------------------------------------------------------

def _loop_waited_s() -> float:
    """Seconds the event-loop thread was runnable but not running (schedstat): behind other
    processes or behind this process's own grpc threads, which share its CPU."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        return int(Path(f"/proc/self/task/{threading.get_native_id()}/schedstat")
                   .read_text().split()[1]) / 1e9
    return 0.0


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


async def _check(client: Any, url: str) -> str:
    """'' when the variant's answers equal the default client's, else what differs."""
    from targets.core.errors import NotFound
    from targets.grpc.client import connect

    ref = await connect(url, timeout=5)
    try:
        for oid in range(1, ORDERS + 1):
            if await client.get_order(oid) != await ref.get_order(oid):
                return f"order {oid} differs from the default client's"
    finally:
        await ref.close()
    try:
        await client.get_order(10**9)
    except NotFound:
        return ""
    except Exception as exc:  # the wrong mapping is the finding
        return f"missing order raised {type(exc).__name__}, not NotFound"
    return "missing order answered"


async def _drive(v: Variant, url: str, users: int, warmup: float,
                 duration: float) -> dict[str, Any]:
    import numpy as np

    module, _, attr = v.factory.partition(":")
    factory = getattr(importlib.import_module(module), attr)
    client = await factory(url, timeout=5, **dict(v.kwargs))
    try:
        wrong = await _check(client, url)
        rng = random.Random(1)
        lat: list[int] = []
        errors = mismatches = 0
        start = time.monotonic() + warmup
        end = start + duration
        clock = time.perf_counter_ns

        async def user() -> None:
            nonlocal errors, mismatches
            while (now := time.monotonic()) < end:
                oid = rng.randint(1, ORDERS)
                t0 = clock()
                try:
                    order = await client.get_order(oid)
                except Exception:  # counted; the run goes on
                    errors += 1
                    continue
                if now >= start:
                    lat.append(clock() - t0)
                    mismatches += order.id != oid

        async def window() -> tuple[float, float, float, float]:
            await asyncio.sleep(max(0.0, start - time.monotonic()))
            c0, q0 = _cpu_s(), _loop_waited_s()
            print("WINDOW start", flush=True)
            await asyncio.sleep(max(0.0, end - time.monotonic()))
            c1, q1 = _cpu_s(), _loop_waited_s()
            print("WINDOW end", flush=True)
            return c0, c1, q0, q1

        w = asyncio.ensure_future(window())
        await asyncio.gather(*(user() for _ in range(users)))
        c0, c1, q0, q1 = await w
    finally:
        await client.close()
    n = len(lat)
    arr = np.array(lat, dtype=np.int64) if n else np.zeros(1, dtype=np.int64)
    return {"rps": n / duration, "cpu": 100 * (c1 - c0) / duration,
            "waited": 100 * (q1 - q0) / duration, "p50_ms": float(np.percentile(arr, 50)) / 1e6,
            "p99_ms": float(np.percentile(arr, 99)) / 1e6, "errors": errors,
            "mismatches": mismatches, "wrong": wrong, "threads": len(os.listdir("/proc/self/task"))}


async def _conformance(v: Variant, url: str) -> list[str]:
    """The conformance suite's checks (harness.stage.conformance) through one arrangement:
    the names of those that failed, with why."""
    from harness.stage.conformance import run_checks
    from targets.core.seed import SeedSpec

    module, _, attr = v.factory.partition(":")
    client = await getattr(importlib.import_module(module), attr)(url, timeout=5,
                                                                 **dict(v.kwargs))
    try:
        checks = await run_checks(client, SeedSpec(**DATA))
    finally:
        await client.close()
    print(f"{len(checks)} checks", flush=True)
    return [f"{c.name}: {c.detail}" for c in checks if not c.passed]


def child(args: argparse.Namespace) -> int:
    import uvloop

    v = VARIANTS[args.child]
    if args.conformance:
        failed = uvloop.run(_conformance(v, args.url))
        print(f"{TAG} " + json.dumps({"failed": failed}), flush=True)
        return 0
    figures = uvloop.run(_drive(v, args.url, args.users, args.warmup, args.duration))
    print(f"{TAG} " + json.dumps(figures), flush=True)
    return 0


# parent -------------------------------------------------------------------------------

@dataclass
class Run:
    variant: str
    rps: float
    cpu: float
    waited: float
    server_cpu: float
    p50_ms: float
    p99_ms: float
    errors: int
    mismatches: int
    wrong: str
    busy_before: float

    @property
    def per_core(self) -> float:
        return self.rps / self.cpu * 100 if self.cpu > 0 else 0.0

    @property
    def us_per_request(self) -> float:
        return self.cpu / 100 / self.rps * 1e6 if self.rps else 0.0


def one_run(v: Variant, url: str, server_pid: int, load: list[int], args: argparse.Namespace,
            busy: float) -> Run:
    """The child pinned to the load CPU; server CPU sampled at the child's window marks."""
    from harness.lifecycle import child_setup
    from harness.run.probes import ProcessProbe

    argv = [sys.executable, "-m", "bench.grpc_clients", "--child", v.name, "--url", url,
            "--users", str(args.users), "--warmup", str(args.warmup),
            "--duration", str(args.duration)]
    env = {**os.environ, **dict(v.env)}
    probe, marks = ProcessProbe([server_pid]), []
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                            preexec_fn=lambda: child_setup(load))
    deadline = time.monotonic() + args.warmup + args.duration + 60
    figures: dict[str, Any] | None = None
    tail: list[str] = []
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            tail = (tail + [line])[-20:]
            if line.startswith("WINDOW "):
                marks.append(probe.sample()[0])
            elif line.startswith(f"{TAG} "):
                figures = json.loads(line[len(TAG) + 1:])
            if time.monotonic() > deadline:
                break
        proc.wait(timeout=10)
    finally:
        kill_group(proc)
    if figures is None or len(marks) < 2:
        raise RuntimeError(f"{v.name}: no figures; last output: " + " | ".join(tail))
    server = 100 * (marks[1] - marks[0]) / args.duration
    return Run(v.name, figures["rps"], figures["cpu"], figures["waited"], server,
               figures["p50_ms"], figures["p99_ms"], figures["errors"], figures["mismatches"],
               figures["wrong"], busy)


def conformance(names: list[str], url: str) -> int:
    """Each arrangement through the conformance checks, in its own process (its env)."""
    bad = 0
    for n in names:
        v = VARIANTS[n]
        proc = subprocess.run([sys.executable, "-m", "bench.grpc_clients", "--child", n,
                               "--conformance", "--url", url], cwd=ROOT, capture_output=True,
                              text=True, timeout=300, env={**os.environ, **dict(v.env)})
        lines = [x for x in proc.stdout.splitlines() if x.startswith(f"{TAG} ")]
        failed = json.loads(lines[-1][len(TAG) + 1:])["failed"] if lines else None
        count = next((x for x in proc.stdout.splitlines() if x.endswith(" checks")), "?")
        print(f"  {n}: " + (f"{count}, all passed" if failed == [] else
                            f"FAILED {failed}" if failed else
                            f"no result: {(proc.stdout + proc.stderr)[-400:]}"), flush=True)
        bad += failed != []
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.grpc_clients",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=4.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--users", type=int, default=50, help="concurrent callers")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help=f"among {', '.join(VARIANTS)}")
    ap.add_argument("--load-cpu", type=int, default=0)
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--quiet-wait", type=float, default=2.0,
                    help="seconds to wait at most for idle cores before each run")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--conformance", action="store_true",
                    help="instead of measuring, run the conformance checks through each")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    if unknown := [n for n in names if n not in VARIANTS]:
        print(f"unknown variant {unknown[0]!r}; choose among {', '.join(VARIANTS)}",
              file=sys.stderr)
        return 2

    from harness.stage.launcher import Launcher
    from targets.core.seed import SeedSpec
    from targets.serving import ServeConfig

    load, server = [args.load_cpu], [args.server_cpu]
    pin(load)
    logs = Path(tempfile.mkdtemp(prefix="commbench-grpc-clients-"))
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    print(f"grpc_clients ({started}): callers on CPU {args.load_cpu}, server on CPU "
          f"{args.server_cpu}; {args.users} callers; {args.reps} × ({args.warmup:g} s warm-up "
          f"+ {args.duration:g} s) per arrangement", flush=True)
    for n in names:
        print(f"  {n}: {VARIANTS[n].about}")
    runs: dict[str, list[Run]] = {n: [] for n in names}
    seed = SeedSpec(users=DATA["users"], orders_per_user=DATA["orders_per_user"],
                    seed=DATA["seed"])
    try:
        with Launcher(logs) as launcher:
            svc = launcher.start("grpc", ServeConfig(namespace=f"bench-{uuid.uuid4().hex[:6]}",
                                                     seed=seed), cpus=server)
            if args.conformance:
                return conformance(names, svc.url)
            for rep in range(args.reps):
                order = names[rep % len(names):] + names[:rep % len(names)]
                for n in order:
                    busy = wait_quiet(load + server, QUIET_BUSY_PCT, args.quiet_wait)
                    r = one_run(VARIANTS[n], svc.url, svc.pid, load, args, busy)
                    runs[n].append(r)
                    print(f"  rep {rep + 1} {n}: {r.rps:,.0f} req/s, client CPU {r.cpu:.0f} % "
                          f"(+{r.waited:.0f} % waited), {r.per_core:,.0f} per load core, "
                          f"{r.us_per_request:.0f} µs/req, server CPU {r.server_cpu:.0f} %, "
                          f"p50/p99 {r.p50_ms:.2f}/{r.p99_ms:.2f} ms, errors {r.errors}, "
                          f"wrong ids {r.mismatches}, check: {r.wrong or 'ok'}; cores "
                          f"{r.busy_before:.0f} % busy before", flush=True)
    finally:
        shutil.rmtree(logs, ignore_errors=True)

    print()
    print(f"grpc_clients summary ({started}; median run by requests per load core, "
          f"[min–max] of that figure)")
    head = (f"{'arrangement':12} {'req/s':>8} {'per load core':>14} {'spread':>17} "
            f"{'µs/req':>7} {'client CPU':>10} {'waited':>7} {'server':>7} {'p50 ms':>7} "
            f"{'p99 ms':>7}  correct")
    print(head)
    print("-" * len(head))
    base = None
    out = []
    for n in names:
        rs = sorted(runs[n], key=lambda r: r.per_core)
        m = rs[(len(rs) - 1) // 2]
        base = base or m.per_core
        ok = all(not r.wrong and not r.errors and not r.mismatches for r in rs)
        print(f"{n:12} {m.rps:8,.0f} {m.per_core:14,.0f} "
              f"{f'[{rs[0].per_core:,.0f}–{rs[-1].per_core:,.0f}]':>17} {m.us_per_request:7.0f} "
              f"{m.cpu:9.0f}% {m.waited:6.0f}% {m.server_cpu:6.0f}% {m.p50_ms:7.2f} "
              f"{m.p99_ms:7.2f}  {'yes' if ok else 'NO'} ({m.per_core / base:.2f}× the first)")
        out.append({"variant": n, "runs": [r.__dict__ | {"per_core": r.per_core} for r in rs]})
    if args.json:
        args.json.write_text(json.dumps({"started": started, "results": out}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
