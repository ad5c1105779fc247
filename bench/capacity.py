"""Capacity of the load engine on this machine, in one bounded run (prints figures; not a test).

Load is pinned to one core and the server to the other:
  (a) the engine's maximum requests/s against each target (closed loop, get_order), with the
      CPU of the load core and of the server, and which side saturates;
  (b) the engine's own ceiling against a no-op endpoint faster than any Python client
      (bench.noop_app on granian), beside wrk and locust FastHttpUser on the same endpoint;
  (c) open loop at 90 % of the ceiling from (b): achieved vs intended rate, schedule lag.
--also-clients probe adds REST client variants beside aiohttp to (a) and (b) (the probe
client: the server's and the engine's ceilings without aiohttp's cost; a probe, not a
production client). Each figure is the median of --reps runs (by requests/s). Ends with a line per goal.

Run: .venv/bin/python -m bench.capacity [--duration 5] [--reps 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

from bench.measure import (
    DATA,
    EngineFigures,
    ToolFigures,
    bare_run,
    closed_scenario,
    engine_run,
    lean_run,
    locust_run,
    noop_server,
    open_scenario,
    pin,
    threads_pinned,
    wait_quiet,
    wrk_run,
)
from harness.stage.broker import broker_pids, delete_namespace, ensure_broker
from harness.stage.launcher import Launcher
from targets.core.seed import SeedSpec
from targets.registry import get_transport
from targets.serving import DEFAULT_AMQP_URL, ServeConfig

SATURATED_PCT = 90.0  # a side using this much of its core is the bottleneck
QUIET_BUSY_PCT = 15.0
T = TypeVar("T", EngineFigures, ToolFigures)


def per_core(f: EngineFigures | ToolFigures) -> float:
    """Requests/s per load core: requests per CPU-second of the load process. Less disturbed
    than requests/s when other processes take the core (the run only slows down)."""
    cpu = f.load_cpu if isinstance(f, EngineFigures) else f.cpu
    return f.rps / cpu * 100 if cpu > 0 else 0.0


def median_run(n: int, quiet: Callable[[], None], run: Callable[[], T],
               key: Callable[[T], float] = lambda f: f.rps) -> tuple[T, list[T]]:
    """`n` runs, each after waiting for quiet cores; the run with the median `key`."""
    runs: list[T] = []
    for _ in range(n):
        quiet()
        runs.append(run())
    ranked = sorted(runs, key=key)
    return ranked[(len(ranked) - 1) // 2], runs


def saturated_side(f: EngineFigures) -> str:
    """A side is saturated when it used (or, for the generator, wanted: CPU plus time spent
    runnable while other processes held its core) nearly all of its core."""
    load = f.load_cpu + f.waited >= SATURATED_PCT
    server = f.server_cpu >= SATURATED_PCT
    if server and not load:
        return "server"
    if load and not server:
        return "load (generator)"
    if load and server:
        return "both"
    return "neither (latency-bound)"


def spread(runs: list[EngineFigures] | list[ToolFigures]) -> str:
    vals = [r.rps for r in runs]
    return f"[{min(vals):,.0f}–{max(vals):,.0f}]" if len(vals) > 1 else ""


def ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.capacity",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per run")
    ap.add_argument("--reps", type=int, default=3, help="runs per figure (median is shown)")
    ap.add_argument("--users", type=int, default=50, help="closed-loop users / connections")
    ap.add_argument("--load-cpu", type=int, default=0)
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--targets", default="rest,grpc,queue")
    ap.add_argument("--open-fractions", default="0.5,0.7,0.9",
                    help="open-loop rates as fractions of the engine's ceiling; the goal is "
                         "checked at the last one")
    ap.add_argument("--quiet-wait", type=float, default=30.0,
                    help="seconds to wait at most for idle cores before each run")
    ap.add_argument("--amqp-url", default=DEFAULT_AMQP_URL)
    ap.add_argument("--json", type=Path, help="also write every figure to this file")
    ap.add_argument("--also-clients", default="",
                    help="REST client variants measured beside aiohttp in (a) and (b), e.g. probe")
    args = ap.parse_args()
    also = [c.strip() for c in args.also_clients.split(",") if c.strip()]
    known = get_transport("rest").clients
    if unknown := [c for c in also if c not in known]:
        print(f"--also-clients: rest has no client {unknown[0]!r}; choose among "
              f"{', '.join(known)}", file=sys.stderr)
        return 2

    cpus = sorted(os.sched_getaffinity(0))
    if args.load_cpu not in cpus or args.server_cpu not in cpus or args.load_cpu == args.server_cpu:
        print(f"need two distinct CPUs among {cpus} for --load-cpu/--server-cpu", file=sys.stderr)
        return 2
    load, server = [args.load_cpu], [args.server_cpu]
    have_wrk = shutil.which("wrk") is not None
    logs = Path(tempfile.mkdtemp(prefix="commbench-capacity-"))
    pin(load)  # this process too: the generator's parent merges and probes here
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"capacity: load on CPU {args.load_cpu}, server on CPU {args.server_cpu}; "
          f"{args.reps} × ({args.warmup:g} s warm-up + {args.duration:g} s); logs in {logs}")

    def quiet() -> None:
        busy = wait_quiet(load + server, QUIET_BUSY_PCT, args.quiet_wait)
        if busy > QUIET_BUSY_PCT:
            print(f"  note: cores still {busy:.0f} % busy with other work before this run")

    out: dict[str, object] = {"started": started, "args": {k: str(v) for k, v in
                                                           vars(args).items()}}
    closed = closed_scenario(args.users, args.duration, args.warmup)
    seed = SeedSpec(users=DATA["users"], orders_per_user=DATA["orders_per_user"],
                    seed=DATA["seed"])

    # (a) each target -------------------------------------------------------------------
    targets: list[tuple[EngineFigures, list[EngineFigures], str]] = []
    variants = {"rest": "aiohttp", "grpc": "grpcio", "queue": "aio-pika"}
    names = [t.strip() for t in args.targets.split(",") if t.strip()]
    for name, variant in [(n, v) for n in names
                          for v in [variants[n], *(also if n == "rest" else [])]]:
        label = name if variant == variants[name] else f"{name}:{variant} (probe)" \
            if get_transport(name).is_probe(variant) else f"{name}:{variant}"
        print(f"(a) {label}: closed loop, {args.users} users …", flush=True)
        namespace = f"bench-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        with ensure_broker(args.amqp_url) if name == "queue" else _nothing(args.amqp_url) as b:
            url = getattr(b, "url", args.amqp_url)
            with Launcher(logs) as launcher:
                svc = launcher.start(name, ServeConfig(amqp_url=url, namespace=namespace, seed=seed),
                                     cpus=server)
                roots, note = [svc.pid], ""
                pinned = _nothing(True)
                if name == "queue":
                    bpids = broker_pids(url) or []
                    roots += bpids
                    pinned = threads_pinned(bpids, server)
                with pinned as ok:
                    if name == "queue":
                        note = ("broker pinned to the server CPU" if ok and roots[1:]
                                else "broker NOT pinned (not permitted or not found)")
                    best, runs = median_run(
                        args.reps, quiet, lambda n=name, v=variant, lb=label, u=svc.url, r=roots:
                        engine_run(lb, n, v, u, closed, load, r))
            if name == "queue":  # after the server stopped, or it would declare them again
                delete_namespace(url, namespace)
        targets.append((best, runs, note))
        _show_engine(best, runs)

    # (b) the engine's own ceiling, wrk, locust -----------------------------------------
    print("(b) no-op Starlette on granian (1 worker) …", flush=True)
    with noop_server(server, logs / "granian.log") as g:
        ceiling, ceiling_runs = median_run(args.reps, quiet, lambda: engine_run(
            "engine (aiohttp)", "rest", "aiohttp", g.url, closed, load, [g.pid]), per_core)
        _show_engine(ceiling, ceiling_runs)
        beside = [median_run(args.reps, quiet, lambda v=v: engine_run(
            f"engine ({v} client)",
            "rest", v, g.url, closed, load, [g.pid]), per_core) for v in also]
        for b_best, b_runs in beside:
            _show_engine(b_best, b_runs)
        wrk: tuple[ToolFigures, list[ToolFigures]] | None = None
        if have_wrk:
            wrk = median_run(args.reps, quiet, lambda: wrk_run(g.url, load, args.users,
                                                               args.duration, args.warmup),
                             per_core)
            _show_tool(*wrk)
        else:
            print("  wrk is not installed (apt-get install -y wrk): its row is skipped")
        locust = median_run(args.reps, quiet, lambda: locust_run(g.url, load, args.users,
                                                                 args.duration, args.warmup),
                            per_core)
        _show_tool(*locust)
        bare = [median_run(args.reps, quiet, lambda m=mode: bare_run(
            g.url, m, load, args.users, args.duration, args.warmup), per_core)
            for mode in ("client", "aiohttp")]
        bare.append(median_run(args.reps, quiet, lambda: lean_run(
            g.url, load, args.users, args.duration, args.warmup), per_core))
        for b in bare:
            _show_tool(*b)

        # (c) open loop at fractions of the ceiling -------------------------------------
        opens: list[tuple[float, int, EngineFigures, list[EngineFigures]]] = []
        for fraction in [float(x) for x in args.open_fractions.split(",")]:
            # The ceiling per load core: a run that lost CPU to other processes is slower,
            # not cheaper per request.
            rate = round(fraction * per_core(ceiling))
            print(f"(c) open loop at {rate:,} requests/s ({fraction:.0%} of the ceiling, "
                  f"{per_core(ceiling):,.0f} per load core) …", flush=True)
            opened = open_scenario(rate, args.duration, args.warmup)
            _, open_runs = median_run(args.reps, quiet, lambda sc=opened: engine_run(
                "engine open loop", "rest", "aiohttp", g.url, sc, load, [g.pid]))
            # The median run by lag p99 (ordering by requests/s says little at a fixed rate).
            by_lag = sorted(open_runs, key=lambda r: r.lag_p99_ms or 0.0)
            open_best = by_lag[(len(by_lag) - 1) // 2]
            opens.append((fraction, rate, open_best, open_runs))
            _show_engine(open_best, open_runs)

    # summary ---------------------------------------------------------------------------
    print()
    print(f"capacity summary ({started}; load CPU {args.load_cpu}, server CPU "
          f"{args.server_cpu}; median of {args.reps})")
    head = (f"{'row':40} {'req/s':>8} {'spread':>17} {'load CPU':>8} {'server CPU':>10} "
            f"{'req/s per load core':>19} {'p50 ms':>7} {'p99 ms':>7}  note")
    print(head)
    print("-" * len(head))
    for f, runs, note in targets:
        print(f"{'(a) ' + f.label + ' get_order':40} {f.rps:8,.0f} {spread(runs):>17} "
              f"{f.load_cpu:7.0f}% {f.server_cpu:9.0f}% {_per_core(f.rps, f.load_cpu):>19} "
              f"{ms(f.p50_ms):>7} {ms(f.p99_ms):>7}  saturates: {saturated_side(f)}"
              + (f"; {note}" if note else "") + _noise(f))
    print(f"{'(b) engine (aiohttp) → no-op':40} {ceiling.rps:8,.0f} {spread(ceiling_runs):>17} "
          f"{ceiling.load_cpu:7.0f}% {ceiling.server_cpu:9.0f}% "
          f"{_per_core(ceiling.rps, ceiling.load_cpu):>19} {ms(ceiling.p50_ms):>7} "
          f"{ms(ceiling.p99_ms):>7}  saturates: {saturated_side(ceiling)}{_noise(ceiling)}")
    for b, runs in beside:
        print(f"{'(b) ' + b.label + ' → no-op':40} {b.rps:8,.0f} {spread(runs):>17} "
              f"{b.load_cpu:7.0f}% {b.server_cpu:9.0f}% {_per_core(b.rps, b.load_cpu):>19} "
              f"{ms(b.p50_ms):>7} {ms(b.p99_ms):>7}  saturates: {saturated_side(b)}{_noise(b)}")
    for tool in ([wrk] if wrk else []) + [locust] + bare:
        t, runs = tool
        print(f"{'(b) ' + t.label:40} {t.rps:8,.0f} {spread(runs):>17} "
              f"{t.cpu:7.0f}% {'':>10} {_per_core(t.rps, t.cpu):>19} {ms(t.p50_ms):>7} "
              f"{ms(t.p99_ms):>7}  {t.note}")
    for fraction, _rate, o, runs in opens:
        print(f"{f'(c) open loop {fraction:.0%} → no-op':40} {o.rps:8,.0f} {spread(runs):>17} "
              f"{o.load_cpu:7.0f}% {o.server_cpu:9.0f}% {'':>19} {ms(o.p50_ms):>7} "
              f"{ms(o.p99_ms):>7}  intended {o.intended / args.duration:,.0f}/s, achieved "
              f"{(o.achieved or 0):.2%}, lag p50/p99/max {ms(o.lag_p50_ms)}/{ms(o.lag_p99_ms)}/"
              f"{ms(o.lag_max_ms)} ms{_noise(o)}")

    # goals -----------------------------------------------------------------------------
    print()
    sat = [(f.label, saturated_side(f)) for f, _, _ in targets]
    ok_a = all(side == "server" for _, side in sat)
    print(f"goal: engine saturates every target before itself: {_met(ok_a)} — "
          + ", ".join(f"{label}: {side} saturated" for label, side in sat))
    eng_pc, loc_pc = per_core(ceiling), per_core(locust[0])
    print(f"goal: engine ceiling ≥ 2× locust FastHttpUser per core: {_met(eng_pc >= 2 * loc_pc)}"
          f" — engine {eng_pc:,.0f} vs locust {loc_pc:,.0f} requests/s per core "
          f"({eng_pc / loc_pc:.2f}×); without the engine the project's REST client does "
          f"{per_core(bare[0][0]):,.0f} and bare aiohttp {per_core(bare[1][0]):,.0f}; the engine "
          f"with a lean HTTP client (bench only) {per_core(bare[2][0]):,.0f}")
    fraction, _rate, o, _runs = opens[-1]
    ok_c = (o.achieved or 0) >= 0.99 and (o.lag_p99_ms or 1e9) < 1.0
    print(f"goal: open loop at {fraction:.0%} of the ceiling holds ≥ 99 % with lag p99 "
          f"< 1 ms: {_met(ok_c)} — achieved {(o.achieved or 0):.2%}, lag p99 "
          f"{ms(o.lag_p99_ms)} ms")
    held = [f for f, _, x, _ in opens if (x.achieved or 0) >= 0.99 and (x.lag_p99_ms or 1e9) < 1]
    print("      lag p99 < 1 ms held at: " + (", ".join(f"{f:.0%}" for f in held) or "none")
          + " of the ceiling")

    if args.json:
        out.update({
            "targets": [{"figures": _d(f), "runs": [_d(r) for r in runs], "note": note}
                        for f, runs, note in targets],
            "ceiling": {"figures": _d(ceiling), "runs": [_d(r) for r in ceiling_runs]},
            "ceiling_beside": [{"figures": _d(b), "runs": [_d(r) for r in rs]}
                               for b, rs in beside],
            "wrk": {"figures": asdict(wrk[0]), "runs": [asdict(r) for r in wrk[1]]} if wrk
            else None,
            "locust": {"figures": asdict(locust[0]), "runs": [asdict(r) for r in locust[1]]},
            "bare": [{"figures": asdict(b[0]), "runs": [asdict(r) for r in b[1]]} for b in bare],
            "open": [{"fraction": f, "rate": r, "figures": _d(x), "runs": [_d(y) for y in ys]}
                     for f, r, x, ys in opens],
        })
        args.json.write_text(json.dumps(out, indent=1))
        print(f"figures written to {args.json}")
    shutil.rmtree(logs, ignore_errors=True)
    return 0


class _nothing:
    """A context manager that yields its value (for optional `with` parts)."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __enter__(self) -> object:
        return self.value

    def __exit__(self, *exc: object) -> None:
        return None


def _d(f: EngineFigures) -> dict[str, object]:
    d = asdict(f)
    d.pop("stats", None)
    d["achieved"] = f.achieved
    return d


def _per_core(rps: float, cpu: float) -> str:
    return f"{rps / cpu * 100:,.0f}" if cpu > 0 else "–"


def _noise(f: EngineFigures) -> str:
    return f" [generator waited for its CPU {f.waited:.1f} % of the time]" if f.waited >= 1 else ""


def _met(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def _show_engine(f: EngineFigures, runs: list[EngineFigures]) -> None:
    for r in runs:
        extra = (f", achieved {(r.achieved or 0):.2%}, lag p50/p99 {ms(r.lag_p50_ms)}/"
                 f"{ms(r.lag_p99_ms)} ms" if r.intended and r.lag_p99_ms is not None else "")
        print(f"  {r.label}: {r.rps:,.0f} req/s, load CPU {r.load_cpu:.0f} %, server CPU "
              f"{r.server_cpu:.0f} %, cores {'/'.join(f'{c:.0f}' for c in r.cores)} %, p50/p99 "
              f"{ms(r.p50_ms)}/{ms(r.p99_ms)} ms, errors {r.errors}, waited {r.waited:.1f} %"
              + extra, flush=True)


def _show_tool(best: ToolFigures, runs: list[ToolFigures]) -> None:
    for r in runs:
        print(f"  {r.label}: {r.rps:,.0f} req/s, CPU {r.cpu:.0f} %, p50/p99 {ms(r.p50_ms)}/"
              f"{ms(r.p99_ms)} ms {r.note}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
