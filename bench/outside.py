"""commbench's open-loop tail against an outside generator's, on the same server (issue 11).

The claim checked: at half a target's capacity on one load core, commbench's p99 is within
1.5× of an outside open-loop generator's against the same server, and a run whose lag
inflates the tail that much is flagged (run.json `saturated`). The outside generator is
wrk2 (Gil Tene's wrk fork: constant rate, latency from each request's intended send time,
so it corrects coordinated omission as commbench does), one thread.

The project's REST server (FastAPI on uvicorn, seeded as bench.capacity seeds it) runs on
the server CPU; its capacity comes from a short closed-loop engine run, as the rate at which
the busier side would fill its core (`cpu_capacity`), or --rate gives the rate. Then, at
--fraction of it, for --reps repetitions alternating which goes first:
(i) wrk2 from the load CPU, --connections connections, a Lua script asking for random ids
of the 1,000 seeded orders (as the engine does); (ii) the real `commbench run` command, a
temporary scenario at the same rate (uniform arrivals, get_order only), `--url` to the same
server, `--load-cpus` the load CPU. Both measure --duration seconds after a warm-up (wrk2's
own calibration: 10 s + 5 ms per connection). Prints p50/p90/p99/p99.9 of both, the ratio
of p99s, commbench's flag and schedule lag, and how busy the cores were before each run.

Run: .venv/bin/python -m bench.outside [--duration 8] [--reps 3] [--rate R] [--wrk2 PATH]
wrk2 is built from source: git clone https://github.com/giltene/wrk2 && make (gcc, openssl).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.measure import (
    DATA,
    ROOT,
    CoreWatch,
    _run_pinned,
    closed_scenario,
    engine_run,
    pin,
    wait_quiet,
)

ORDERS = DATA["users"] * DATA["orders_per_user"]
QUIET_BUSY_PCT = 15.0
WRK2_CALIBRATION_S = 10.0  # wrk2 resets its histograms after this (+ 5 ms per connection)
LIMIT = 1.5  # the claim: commbench's p99 within 1.5× the outside generator's
LUA = """math.randomseed(1)
request = function()
  return wrk.format("GET", "/orders/" .. math.random(1, %d))
end
"""


@dataclass
class Tail:
    tool: str
    rep: int
    rate: float  # requests/s achieved
    p50: float | None
    p90: float | None
    p99: float | None
    p999: float | None
    cpu: float | None = None  # % of one core (wrk2)
    saturated: bool | None = None  # commbench's flag
    lag_p99: float | None = None
    note: str = ""
    busy_before: float = 0.0
    busy_during: tuple[float, ...] = ()  # every process's, ours included: load CPU, server CPU
    achieved: float | None = None  # commbench: share of the intended requests sent in time
    at: str = ""


def cpu_capacity(rps: float, load_cpu: float, server_cpu: float) -> float:
    """The rate at which the busier side (generator or server) would fill its core, at the
    CPU per request it was measured with. On a shared machine a closed loop that lost its
    cores to other processes is slower, not costlier per request, so this is steadier than
    the requests/s measured (quiet: both sides ~98 %, the two agree)."""
    busiest = max(load_cpu, server_cpu)
    return rps * 100 / busiest if busiest > 0 else rps


def find_wrk2(given: str | None) -> str | None:
    for c in [given, os.environ.get("WRK2"), shutil.which("wrk2")]:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return None


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]


def wrk2_run(wrk2: str, url: str, rate: float, connections: int, duration_s: float,
             load: list[int], script: Path, rep: int) -> Tail:
    """One wrk2 run, 1 thread; the measured part is what follows its calibration."""
    total = WRK2_CALIBRATION_S + 0.005 * connections + duration_s
    out, cpu, wall = _run_pinned([wrk2, "-t1", f"-c{connections}", f"-d{total:.0f}s",
                                  f"-R{rate:.0f}", "--latency", "-s", str(script), url],
                                 load, total + 30)
    pct = {float(p): _ms(v) for p, v in re.findall(r"^\s*([\d.]+)%\s+(\S+)\s*$", out, re.M)}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    return Tail("wrk2", rep, float(rps.group(1)) if rps else 0.0, pct.get(50.0), pct.get(90.0),
                pct.get(99.0), pct.get(99.9), 100 * cpu / wall,
                note=errs.group(0) if errs else "")


SCENARIO = """name = "outside-check"
description = "bench.outside: get_order at a fixed rate, uniform arrivals"
targets = ["rest"]
duration = "{duration}s"
warmup = "{warmup}s"
repetitions = 1

[data]
users = {users}
orders_per_user = {per_user}
store = "memory"
seed = {seed}

[load]
model = "open"
rate = {rate}
arrival = "uniform"
in_flight = 256
timeout = "5s"

[operations]
get = 1
"""


def commbench_run(url: str, pid: int, rate: float, duration_s: float, warmup_s: float,
                  client: str, load: list[int], work: Path, rep: int) -> Tail:
    """The real `commbench run` against the running server (--url), generator on `load`."""
    scenario = work / f"outside-{rep}.toml"
    scenario.write_text(SCENARIO.format(duration=duration_s, warmup=warmup_s, rate=round(rate),
                                        users=DATA["users"], per_user=DATA["orders_per_user"],
                                        seed=DATA["seed"]))
    results = work / f"results-{rep}"
    target = "rest" if client == "aiohttp" else f"rest:{client}"
    argv = [str(Path(sys.executable).parent / "commbench"), "run", str(scenario),
            "--targets", target, "--url", f"{target.split(':')[0]}={url}",
            "--pid", f"rest={pid}", "--load-cpus", ",".join(map(str, load)),
            "--results-dir", str(results)]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True,
                          timeout=warmup_s + duration_s + 90, start_new_session=True)
    runs = sorted(results.glob("*/run.json"))
    if proc.returncode != 0 or not runs:
        raise RuntimeError(f"commbench run failed ({proc.returncode}): "
                           f"{(proc.stdout + proc.stderr)[-800:]}")
    run = json.loads(runs[-1].read_text())
    with open(runs[-1].parent / "summary.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["operation"] == "all")
    lag = re.search(r"schedule lag p99 ([\d.]+) ms", " ".join(run.get("warnings", [])))

    def num(key: str) -> float | None:
        return float(row[key]) if row.get(key) else None

    return Tail("commbench" + ("" if client == "aiohttp" else f" ({client})"), rep,
                num("throughput_rps") or 0.0, num("latency_p50_ms"), num("latency_p90_ms"),
                num("latency_p99_ms"), num("latency_p999_ms"),
                saturated=bool(run["targets"][0].get("saturated")),
                achieved=(num("achieved_rps") or 0) / (num("intended_rps") or 1),
                lag_p99=float(lag.group(1)) if lag else _lag_from_timeline(runs[-1].parent),
                note="; ".join(run.get("warnings", [])))


def _lag_from_timeline(folder: Path) -> float | None:
    """The worst per-second schedule lag p99 (timeline.csv), when no warning states it."""
    path = folder / "timeline.csv"
    if not path.exists():
        return None
    with open(path, newline="") as f:
        lags = [float(r["schedule_lag_p99_ms"]) for r in csv.DictReader(f)
                if r.get("operation") == "all" and r.get("schedule_lag_p99_ms")]
    return max(lags) if lags else None


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.outside",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=8.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=2.0, help="commbench's warm-up seconds")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rate", type=float, help="requests/s (default: --fraction of capacity)")
    ap.add_argument("--fraction", type=float, default=0.5)
    ap.add_argument("--connections", type=int, default=50, help="wrk2's connections")
    ap.add_argument("--client", default="aiohttp", help="commbench's REST client variant")
    ap.add_argument("--wrk2", help="path of the wrk2 binary (default: $WRK2, then wrk2 on "
                                   "PATH)")
    ap.add_argument("--load-cpu", type=int, default=0)
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--quiet-wait", type=float, default=10.0,
                    help="seconds to wait at most for idle cores before each run")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    wrk2 = find_wrk2(args.wrk2)
    if wrk2 is None:
        print("wrk2 not found: build it (see this module's docstring) and pass --wrk2 PATH",
              file=sys.stderr)
        return 2

    from harness.stage.launcher import Launcher
    from targets.core.seed import SeedSpec
    from targets.serving import ServeConfig

    load, server = [args.load_cpu], [args.server_cpu]
    pin(load)
    work = Path(tempfile.mkdtemp(prefix="commbench-outside-"))
    script = work / "ids.lua"
    script.write_text(LUA % ORDERS)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    seed = SeedSpec(users=DATA["users"], orders_per_user=DATA["orders_per_user"],
                    seed=DATA["seed"])
    tails: list[Tail] = []
    try:
        with Launcher(work / "logs") as launcher:
            svc = launcher.start("rest", ServeConfig(namespace=f"bench-{uuid.uuid4().hex[:6]}",
                                                     seed=seed), cpus=server)
            rate = args.rate
            if rate is None:
                busy = wait_quiet(load + server, QUIET_BUSY_PCT, args.quiet_wait)
                cap = engine_run("capacity", "rest", "aiohttp", svc.url,
                                 closed_scenario(50, 3.0, 1.0), load, [svc.pid])
                capacity = cpu_capacity(cap.rps, cap.load_cpu, cap.server_cpu)
                rate = args.fraction * capacity
                print(f"capacity ({started}): {capacity:,.0f} req/s on one core of the busier "
                      f"side; measured {cap.rps:,.0f} req/s closed loop (50 users), generator "
                      f"CPU {cap.load_cpu:.0f} % (+{cap.waited:.0f} % waited), server CPU "
                      f"{cap.server_cpu:.0f} %; cores {busy:.0f} % busy before", flush=True)
            print(f"open loop at {rate:,.0f} requests/s ({args.fraction:.0%} of it) for "
                  f"{args.duration:g} s: wrk2 ({wrk2}, 1 thread, {args.connections} "
                  f"connections) and commbench run (client {args.client})", flush=True)
            for rep in range(1, args.reps + 1):
                order = ["wrk2", "commbench"] if rep % 2 else ["commbench", "wrk2"]
                for tool in order:
                    busy = wait_quiet(load + server, QUIET_BUSY_PCT, args.quiet_wait)
                    at, watch = time.strftime("%H:%M:%S"), CoreWatch()
                    t = (wrk2_run(wrk2, svc.url, rate, args.connections, args.duration, load,
                                  script, rep) if tool == "wrk2" else
                         commbench_run(svc.url, svc.pid, rate, args.duration, args.warmup,
                                       args.client, load, work, rep))
                    cores = watch.busy()
                    t.busy_before, t.at = busy, at
                    t.busy_during = (cores[args.load_cpu], cores[args.server_cpu])
                    tails.append(t)
                    print(f"  {at} rep {rep} {_line(t)}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"outside summary ({started}; {rate:,.0f} requests/s; ms)")
    print(f"{'rep':>3} {'tool':22} {'req/s':>8} {'p50':>7} {'p90':>7} {'p99':>7} {'p99.9':>7}"
          f"  p99 ratio / flag")
    for rep in range(1, args.reps + 1):
        w = next(t for t in tails if t.rep == rep and t.tool == "wrk2")
        c = next(t for t in tails if t.rep == rep and t.tool != "wrk2")
        for t in (w, c):
            extra = ""
            if t is c and w.p99 and c.p99:
                ratio = c.p99 / w.p99
                verdict = ("within" if ratio <= LIMIT else "beyond") + f" {LIMIT}×"
                flag = "flagged saturated" if c.saturated else "not flagged"
                ok = ratio <= LIMIT or c.saturated
                extra = (f"  {ratio:.2f}× ({verdict}); {flag}; lag p99 {_f(c.lag_p99)} ms"
                         f" → claim {'holds' if ok else 'FAILS'} for this pair")
            print(f"{rep:>3} {t.tool:22} {t.rate:8,.0f} {_f(t.p50):>7} {_f(t.p90):>7} "
                  f"{_f(t.p99):>7} {_f(t.p999):>7}{extra}")
    if args.json:
        args.json.write_text(json.dumps({"started": started, "rate": rate,
                                         "runs": [asdict(t) for t in tails]}, indent=1))
    return 0


def _f(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def _line(t: Tail) -> str:
    extra = (f", wrk2 CPU {t.cpu:.0f} %" if t.cpu is not None else
             f", achieved {t.achieved or 0:.1%}, saturated {t.saturated}, lag p99 "
             f"{_f(t.lag_p99)} ms")
    during = "/".join(f"{c:.0f}" for c in t.busy_during)
    return (f"{t.tool}: {t.rate:,.0f} req/s, p50/p90/p99/p99.9 {_f(t.p50)}/{_f(t.p90)}/"
            f"{_f(t.p99)}/{_f(t.p999)} ms{extra}; cores {t.busy_before:.0f} % busy before, "
            f"load/server CPU {during} % busy during (all processes)"
            + (f"; {t.note[:200]}" if t.note else ""))


if __name__ == "__main__":
    sys.exit(main())
