"""Building blocks of the bench scripts: CPU pinning and accounting, the no-op granian
server, and one bounded measurement each for the engine, wrk and locust.

Every process started here runs in its own session and is killed as a group in `finally`;
every measurement is bounded in time.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from harness.lifecycle import child_setup
from harness.load.engine import EngineConfig, EngineStats
from harness.load.recorder import NS, Merger, SecondRecord, Totals, percentile_ms
from harness.load.workers import WorkerPool, WorkerSpec
from harness.run.probes import ProcessProbe
from harness.scenario import Scenario, parse_scenario

ROOT = Path(__file__).resolve().parent.parent
START_LEAD_NS = 300_000_000
READY_TIMEOUT_S = 20.0
mono = time.monotonic_ns


def pin(cpus: Sequence[int]) -> None:
    os.sched_setaffinity(0, set(cpus))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Readiness: the port accepts a connection (or the process died: fail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)  # polling an external process's readiness, not synchronisation
    raise RuntimeError(f"nothing listened on port {port} within {timeout:.0f} s")


def kill_group(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """TERM the process group, KILL it if it lingers, and reap the leader."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class Granian:
    url: str
    pid: int


@contextlib.contextmanager
def noop_server(cpus: Sequence[int], log: Path) -> Iterator[Granian]:
    """bench.noop_app on granian, 1 worker, pinned to `cpus`; the whole group killed on exit."""
    port = free_port()
    argv = [str(Path(sys.executable).parent / "granian"), "--interface", "asgi", "--workers", "1",
            "--loop", "uvloop", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "bench.noop_app:app"]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=lambda: child_setup(cpus))
    try:
        _wait_port(port, proc, READY_TIMEOUT_S)
        yield Granian(f"http://127.0.0.1:{port}", proc.pid)
    finally:
        kill_group(proc)


def run_queue_wait_s(pid: int) -> float:
    """Seconds the main thread of `pid` (the event loop) spent runnable but waiting for a CPU
    taken by other processes: the noise indicator of a shared machine (/proc/PID/schedstat)."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / NS
    return 0.0


def wait_quiet(cpus: Sequence[int], max_busy: float, max_wait_s: float) -> float:
    """Wait (up to `max_wait_s`) until `cpus` are below `max_busy` % busy over half a second,
    so that other work on a shared machine does not land in a measurement. Returns the last
    busy % seen (the caller reports it)."""
    deadline = time.monotonic() + max_wait_s
    while True:
        w = CoreWatch()
        time.sleep(0.5)  # the sampling window of the check, not synchronisation
        busy = max(w.busy()[c] for c in cpus)
        if busy <= max_busy or time.monotonic() >= deadline:
            return busy


@contextlib.contextmanager
def threads_pinned(pids: Sequence[int], cpus: Sequence[int]) -> Iterator[bool]:
    """Pin every thread of `pids` (e.g. the broker's) to `cpus`, restore on exit. Yields False
    (and changes nothing) when that is not permitted."""
    saved: list[tuple[int, set[int]]] = []
    ok = True
    try:
        for pid in pids:
            for task in Path(f"/proc/{pid}/task").glob("*"):
                tid = int(task.name)
                try:
                    saved.append((tid, os.sched_getaffinity(tid)))
                    os.sched_setaffinity(tid, set(cpus))
                except OSError:
                    ok = False
        yield ok
    finally:
        for tid, mask in saved:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, mask)


class CoreWatch:
    """Busy share of each CPU between two samples (everything on the machine, not just us)."""

    def __init__(self) -> None:
        self._t0 = psutil.cpu_times(percpu=True)

    def busy(self) -> list[float]:
        out = []
        for a, b in zip(self._t0, psutil.cpu_times(percpu=True), strict=True):
            total = sum(b) - sum(a)
            idle = (b.idle + b.iowait) - (a.idle + a.iowait)
            out.append(100.0 * (1 - idle / total) if total > 0 else 0.0)
        return out


@dataclass
class EngineFigures:
    """One engine run's measured window."""

    label: str
    rps: float
    load_cpu: float  # % of one core, the generator process
    server_cpu: float  # % of one core, the target's processes (broker included if given)
    cores: list[float]  # busy % per CPU over the window
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    waited: float = 0.0  # % of the window the generator was runnable but not running
    intended: int = 0
    started: int = 0
    lag_p50_ms: float | None = None
    lag_p99_ms: float | None = None
    lag_max_ms: float | None = None
    stats: list[EngineStats] = field(default_factory=list)

    @property
    def achieved(self) -> float | None:
        return self.started / self.intended if self.intended else None


DATA = {"users": 100, "orders_per_user": 10, "seed": 1}  # the targets are seeded the same


def merged(records: Sequence[SecondRecord]) -> Totals:
    """The totals of one in-process engine's seconds, merged afterwards (as a run's parent
    merges its generator processes' seconds)."""
    merger = Merger(1, lambda m: None)
    for r in records:
        merger.add(0, r)
    merger.finish(0)
    merger.flush_all()
    return merger.totals


def closed_scenario(users: int, duration_s: float, warmup_s: float) -> Scenario:
    return _scenario({"model": "closed", "users": users, "timeout": "5s"}, duration_s, warmup_s)


def open_scenario(rate: float, duration_s: float, warmup_s: float, arrival: str = "uniform",
                  in_flight: int = 256) -> Scenario:
    return _scenario({"model": "open", "rate": rate, "arrival": arrival, "in_flight": in_flight,
                      "timeout": "5s"}, duration_s, warmup_s)


def _scenario(load: dict[str, object], duration_s: float, warmup_s: float) -> Scenario:
    return parse_scenario({
        "name": "bench", "targets": ["rest"], "duration": duration_s, "warmup": warmup_s,
        "data": DATA,
        "load": load, "operations": {"get": 1},
    }, "bench")


def engine_run(label: str, transport: str, variant: str, url: str, sc: Scenario,
               load_cpus: Sequence[int], server_pids: Sequence[int]) -> EngineFigures:
    """One generator process (the `commbench run` worker, pinned to `load_cpus`) against `url`;
    CPU of the generator and of `server_pids` (process trees) over the measured window."""
    merger = Merger(1, lambda m: None)
    spec = WorkerSpec(transport, variant, url, EngineConfig(sc, 0, 1, "bench"), tuple(load_cpus))
    pool = WorkerPool([spec])
    stats: list[EngineStats] = []
    try:
        pool.wait_ready()
        gen = ProcessProbe(pool.pids)
        srv = ProcessProbe(server_pids)
        t0 = mono() + START_LEAD_NS
        start = t0 + round(sc.warmup_s * NS)
        end = start + round(sc.duration_s * NS)
        marks: list[tuple[int, float, float, float, CoreWatch | None]] = []
        wpid = pool.pids[0]
        pool.start(t0)
        while not pool.finished:
            due = start if not marks else end if len(marks) == 1 else None
            wait = 0.5 if due is None else max(0.0, min(0.5, (due - mono()) / NS))
            for kind, index, payload in pool.poll(wait):
                if kind == "second":
                    merger.add(index, payload)
                elif kind == "done":
                    merger.finish(index)
                    if payload is not None:
                        stats.append(payload)
                elif kind == "error":
                    raise RuntimeError(f"{label}: load process failed: {payload}")
            if due is not None and mono() >= due:
                marks.append((mono(), gen.sample()[0], srv.sample()[0], run_queue_wait_s(wpid),
                              CoreWatch() if not marks else None))
                if len(marks) == 2:
                    cores = marks[0][4].busy()  # type: ignore[union-attr]
        merger.flush_all()
    finally:
        pool.close()
    if len(marks) < 2:
        raise RuntimeError(f"{label}: the generator ended before the measured window closed")
    (ta, ga, sa, qa, _), (tb, gb, sb, qb, _) = marks
    wall = (tb - ta) / NS
    return _figures(label, merger.totals, sc, 100 * (gb - ga) / wall, 100 * (sb - sa) / wall,
                    cores, 100 * (qb - qa) / wall, stats)


def _figures(label: str, t: Totals, sc: Scenario, load_cpu: float, server_cpu: float,
             cores: list[float], waited: float, stats: list[EngineStats]) -> EngineFigures:
    ops = ("get",)
    ok = t.histogram(ops, "ok", "latency")
    errors = t.histogram(ops, "error", "latency").get_total_count()
    count = ok.get_total_count() + errors
    lag = t.lag if t.lag.get_total_count() else None
    return EngineFigures(
        label, count / sc.duration_s, load_cpu, server_cpu, cores,
        percentile_ms(ok, 50), percentile_ms(ok, 99), errors, waited, t.intended, t.started,
        percentile_ms(lag, 50), percentile_ms(lag, 99),
        lag.get_max_value() / 1000 if lag is not None else None, stats)


@dataclass
class ToolFigures:
    label: str
    rps: float
    cpu: float  # % of one core
    p50_ms: float | None = None
    p99_ms: float | None = None
    note: str = ""


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _run_pinned(argv: list[str], cpus: Sequence[int], timeout: float) -> tuple[str, float, float]:
    """Run a bounded command pinned to `cpus` in its own session: (stdout, cpu s, wall s)."""
    cpu0, t0 = _children_cpu(), time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=lambda: child_setup(cpus))
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        kill_group(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited with {proc.returncode}: {out.decode()[-500:]}")
    return out.decode(), _children_cpu() - cpu0, time.monotonic() - t0


def _wrk_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def wrk_run(url: str, cpus: Sequence[int], connections: int, duration_s: float,
            warmup_s: float) -> ToolFigures:
    """wrk, 1 thread; a separate warm-up run first (wrk has none of its own)."""
    path = url + "/orders/1"
    if warmup_s > 0:
        _run_pinned(["wrk", "-t1", f"-c{connections}", f"-d{warmup_s:g}s", path], cpus,
                    warmup_s + 30)
    out, cpu, wall = _run_pinned(["wrk", "-t1", f"-c{connections}", f"-d{duration_s:g}s",
                                  "--latency", path], cpus, duration_s + 30)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"cannot read wrk's output: {out[-500:]}")
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    return ToolFigures("wrk", float(m.group(1)), 100 * cpu / wall,
                       _wrk_ms(p50.group(1)) if p50 else None,
                       _wrk_ms(p99.group(1)) if p99 else None)


def _tagged_run(module: str, args: list[str], tag: str, cpus: Sequence[int],
                budget_s: float) -> dict[str, Any]:
    """Run `python -m module args` pinned, and read the one `TAG {json}` line it prints."""
    import json

    out, _, _ = _run_pinned([sys.executable, "-m", module, *args], cpus, budget_s + 60)
    m = re.search(rf"^{tag} (\{{.*\}})$", out, re.M)
    if not m:
        raise RuntimeError(f"cannot read {module}'s output: {out[-800:]}")
    return dict(json.loads(m.group(1)))


def _load_args(users: int, duration_s: float, warmup_s: float) -> list[str]:
    return ["--users", str(users), "--warmup", str(warmup_s), "--duration", str(duration_s)]


def locust_run(url: str, cpus: Sequence[int], users: int, duration_s: float,
               warmup_s: float) -> ToolFigures:
    """bench.locust_fast in its own process: FastHttpUser, headless, one process."""
    d = _tagged_run("bench.locust_fast", ["--host", url, *_load_args(users, duration_s, warmup_s)],
                    "LOCUST", cpus, warmup_s + duration_s)
    return ToolFigures("locust FastHttpUser", d["rps"], d["cpu"], d["p50_ms"], d["p99_ms"],
                       f"{d['failures']} failures")


def bare_run(url: str, mode: str, cpus: Sequence[int], users: int, duration_s: float,
             warmup_s: float) -> ToolFigures:
    """bench.bare_client in its own pinned process: the REST client with no engine around."""
    d = _tagged_run("bench.bare_client",
                    ["--url", url, "--mode", mode, *_load_args(users, duration_s, warmup_s)],
                    "BARE", cpus, warmup_s + duration_s)
    label = "project REST client, no engine" if mode == "client" else "bare aiohttp, no engine"
    return ToolFigures(label, d["rps"], d["cpu"])


def lean_run(url: str, cpus: Sequence[int], users: int, duration_s: float,
             warmup_s: float) -> ToolFigures:
    """bench.lean_http in its own pinned process: the engine with a minimal HTTP client."""
    d = _tagged_run("bench.lean_http", ["--url", url, *_load_args(users, duration_s, warmup_s)],
                    "LEAN", cpus, warmup_s + duration_s)
    return ToolFigures("engine + lean HTTP client (bench only)", d["rps"], d["cpu"],
                       note=f"{d['errors']} errors")
