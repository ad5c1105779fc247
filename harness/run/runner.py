"""Orchestrates `commbench run`: for each repetition and target (the target order rotates
from one repetition to the next, so no transport always goes first), start the target in its
own process group, pass the conformance gate, spawn the generator processes, warm up,
measure, stop, and write the result folder. Every exit path stops everything; Ctrl-C (and
SIGTERM, which the CLI turns into KeyboardInterrupt) keeps what was measured, marks the run
partial and re-raises so the CLI exits 130.

Saturation rule: an open-loop target run is flagged `saturated` when the generator sent
fewer than 99 % of the intended requests within the measured window, or when the schedule
lag p99 (actual send − intended start) exceeds 10 ms. Lag includes waiting for a free
in-flight slot, so a stalled target that fills the bound is flagged too; the warning says
how often the bound was reached.

Interrupted and failed target runs: the measured window ends when the run was stopped, so
rates are divided by the time actually measured; the saturation rule looks only at the whole
seconds before the stop (an interrupted run), or is not applied (a failed one), so a stop is
never reported as a saturated generator.

Every run has a random token in its queue namespace (`cb-<run-id>-<token>-<target>-r<rep>`),
so two runs on one broker never share a queue, even when started in the same second.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import multiprocessing.connection as mpc
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from harness.errors import UserError
from harness.lifecycle import signals_ignored
from harness.load.engine import EngineConfig, EngineStats
from harness.load.recorder import NS, MergedSecond, Merger, new_histogram, percentile_ms
from harness.load.workers import Message, WorkerPool, WorkerSpec
from harness.run.probes import ProcessProbe, broker_pids
from harness.run.progress import ProgressView, summary_table
from harness.run.results import ResourceSample, ResultWriter, TargetResults, run_id_for, utc_iso
from harness.scenario import Scenario, TargetRef, find_scenario, load_scenario, parse_target
from harness.stage.broker import delete_namespace
from harness.stage.launcher import Launcher, Service
from targets.redact import redact, redact_text
from targets.registry import get_transport
from targets.serving import DEFAULT_AMQP_URL, ServeConfig

SATURATION_ACHIEVED = 0.99
SATURATION_LAG_MS = 10.0
START_LEAD_NS = 200_000_000  # workers get their common start time this far ahead
PACKAGES = ("aiohttp", "httpx", "fastapi", "starlette", "uvicorn", "grpcio", "protobuf",
            "aio-pika", "aiormq", "uvloop", "orjson", "hdrhistogram", "psutil", "rich")
mono = time.monotonic_ns


@dataclass
class RunOptions:
    scenario: str
    targets: str | None = None
    rate: float | None = None
    duration_s: float | None = None
    repetitions: int | None = None
    processes: int = 1
    target_cpus: tuple[int, ...] = ()
    load_cpus: tuple[int, ...] = ()
    concurrent: bool = False
    results_dir: Path = Path("results")
    amqp_url: str = DEFAULT_AMQP_URL
    scenarios_dir: Path = Path("scenarios")

    def arguments(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "targets": self.targets, "rate": self.rate,
                "duration": self.duration_s, "repetitions": self.repetitions,
                "processes": self.processes, "target_cpus": list(self.target_cpus),
                "load_cpus": list(self.load_cpus), "concurrent": self.concurrent,
                "results_dir": str(self.results_dir), "amqp_url": redact(self.amqp_url)}


@dataclass
class RunOutcome:
    path: Path
    status: str
    rows: list[dict[str, Any]]
    failed: list[str]
    warnings: list[str]


def parse_cpus(text: str | None, option: str) -> tuple[int, ...]:
    """'1', '0,1' or '0-1' → CPU numbers this process may use; UserError otherwise."""
    if not text:
        return ()
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            cpus.update(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    except ValueError:
        raise UserError(f"{option} takes CPU numbers such as 1, 0,1 or 0-1; got {text!r}") \
            from None
    allowed = os.sched_getaffinity(0)
    if not cpus or not cpus <= allowed:
        raise UserError(f"{option} {text!r}: this machine offers CPUs "
                        f"{','.join(map(str, sorted(allowed)))}")
    return tuple(sorted(cpus))


@dataclass
class TargetRun:
    """One (target, repetition): its server, its generator processes and its results."""

    ref: TargetRef
    repetition: int
    scenario: Scenario
    status: str = "not_run"
    error: str | None = None
    url: str = ""
    saturated: bool = False
    service: Service | None = None
    pool: WorkerPool | None = None
    probe: ProcessProbe | None = None
    results: TargetResults | None = None
    merger: Merger | None = None
    conformance: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)
    stats: list[EngineStats] = field(default_factory=list)
    # timing (monotonic ns) and window accounting
    t0_ns: int = 0
    measure_start_ns: int = 0
    next_probe_second: int = 0
    last_probe: tuple[int, float] | None = None
    cpu_at_start: float | None = None
    cpu_at_end: float | None = None
    window_intended: int = 0  # every second of the measured window
    window_started: int = 0
    stop_ns: int | None = None  # when an interrupted or failed run was stopped
    full_intended: int = 0  # the whole seconds measured before any stop
    full_started: int = 0
    full_seconds: float = 0.0
    full_lag: Any = None  # HdrHistogram of their schedule lag
    client_probe: ProcessProbe | None = None  # the generator processes
    client_cpu_start: float | None = None
    client_cpu_end: float | None = None

    @property
    def label(self) -> str:
        return f"{self.ref.name} r{self.repetition}"

    @property
    def window_seconds(self) -> int:
        return -int(-self.scenario.duration_s // 1)

    def fail(self, message: str) -> None:
        if self.status not in ("failed", "interrupted"):
            self.status, self.error = "failed", message
            self.stopped()

    def stopped(self) -> None:
        """The measured window ends now (an interruption or a failure during the load)."""
        if self.stop_ns is not None or not self.t0_ns:
            return
        self.stop_ns = mono()
        if self.client_probe is not None and self.client_cpu_start is not None \
                and self.client_cpu_end is None:
            self.client_cpu_end = self.client_probe.sample()[0]

    @property
    def measured_s(self) -> float:
        """Seconds of the measured window actually measured (the stop cuts it short)."""
        if self.stop_ns is None:
            return self.scenario.duration_s
        return min(self.scenario.duration_s,
                   max(0.0, (self.stop_ns - self.measure_start_ns) / NS))


class Runner:
    def __init__(self, opts: RunOptions, console: Console | None = None) -> None:
        self.opts = opts
        self.console = console or Console()
        path = find_scenario(opts.scenario, opts.scenarios_dir)
        self.scenario_file = path
        sc = load_scenario(path)
        targets = None
        if opts.targets:
            try:
                targets = tuple(parse_target(t) for t in opts.targets.split(",") if t.strip())
            except KeyError as exc:
                raise UserError(f"--targets: {exc.args[0]}") from None
            if not targets:
                raise UserError("--targets: name at least one target")
            for n, ref in enumerate(targets):
                if ref in targets[:n]:
                    raise UserError(f"--targets: {ref.name} is listed twice")
        self.scenario = sc.with_overrides(targets=targets, rate=opts.rate,
                                          duration_s=opts.duration_s,
                                          repetitions=opts.repetitions)
        if opts.processes < 1:
            raise UserError(f"--processes must be at least 1, got {opts.processes}")
        self.run_id = run_id_for(self.scenario.name)
        self.token = uuid.uuid4().hex[:8]  # unique per run: queue names on a shared broker
        self.broker: dict[str, Any] | None = None
        self.warnings: list[str] = []
        self.runs: list[TargetRun] = []
        self.started_at = time.time()

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> RunOutcome:
        sc, opts = self.scenario, self.opts
        try:
            opts.results_dir.mkdir(parents=True, exist_ok=True)
            self.writer = ResultWriter(opts.results_dir, self.run_id)
        except OSError as exc:
            raise UserError(f"--results-dir {opts.results_dir}: cannot write results there "
                            f"({exc.strerror})") from None
        self.run_id = self.writer.run_id  # with a suffix when another run took the name
        self.progress = ProgressView(self.console)
        self.progress.note(f"run {self.run_id}: {sc.name}, targets "
                           f"{', '.join(t.name for t in sc.targets)}, "
                           f"{sc.repetitions} repetition(s) → {self.writer.dir}")
        all_cpus = tuple(sorted(os.sched_getaffinity(0)))
        status = "complete"
        try:
            if opts.load_cpus:
                os.sched_setaffinity(0, set(opts.load_cpus))
            with self._broker() as amqp_url, Launcher(self.writer.log_dir) as launcher:
                self.amqp_url = amqp_url
                self.launcher = launcher
                self.target_cpus = opts.target_cpus or all_cpus
                for rep in range(1, sc.repetitions + 1):
                    order = list(sc.targets)
                    shift = (rep - 1) % len(order)
                    order = order[shift:] + order[:shift]
                    runs = [TargetRun(ref, rep, sc) for ref in order]
                    self.runs.extend(runs)
                    if opts.concurrent:
                        self._measure(runs)
                    else:
                        for r in runs:
                            self._measure([r])
        except KeyboardInterrupt:
            with signals_ignored():
                outcome = self._finish("partial")
            raise Interrupted(outcome) from None
        except UserError:
            if not self.runs:  # refused before anything ran (e.g. the broker): no result
                shutil.rmtree(self.writer.dir, ignore_errors=True)
                raise
            with signals_ignored():
                self._finish("partial")
            raise
        except BaseException:
            with signals_ignored():
                self._finish("partial")
            raise
        finally:
            self.progress.close()
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, set(all_cpus))
        return self._finish(status)

    @contextlib.contextmanager
    def _broker(self) -> Iterator[str]:
        if not any(get_transport(t.transport).needs_broker for t in self.scenario.targets):
            yield self.opts.amqp_url
            return
        from harness.stage.broker import ensure_broker

        with ensure_broker(self.opts.amqp_url) as broker:
            where = (f"a private broker at {redact(broker.url)} ({broker.startup_s:.1f} s to "
                     "start)" if broker.private else f"{redact(broker.url)} (shared)")
            self.progress.note(f"broker: {where}")
            self.broker = {"url": redact(broker.url), "shared": not broker.private,
                           "private": broker.private,
                           "note": "started for this run and stopped after it"
                           if broker.private else
                           "an existing broker found at --amqp-url; other work on it is "
                           "charged to the queue's CPU per request"}
            if not broker.private:
                self.warnings.append(
                    f"the queue used a shared broker ({redact(broker.url)}): its CPU per "
                    "request includes everything that broker did during the measured window, "
                    "other users' work included")
            yield broker.url

    def _measure(self, runs: list[TargetRun]) -> None:
        """Start, gate, load and stop a set of target runs (one, or all with --concurrent)."""
        try:
            for r in runs:
                self._prepare(r)
            live = [r for r in runs if r.status == "running"]
            if live:
                t0 = mono() + START_LEAD_NS
                for r in live:
                    self._begin(r, t0)
                self._drive(live)
            for r in runs:
                self._complete(r)
        except KeyboardInterrupt:
            with signals_ignored():
                self._abort(runs, "interrupted")
            raise
        except BaseException:
            with signals_ignored():
                self._abort(runs, "failed")
            raise
        finally:
            with signals_ignored():
                for r in runs:
                    self._release(r)

    def _prepare(self, r: TargetRun) -> None:
        sc = self.scenario
        store = "memory"
        if sc.data.store == "sqlite":
            data = self.writer.dir / "data"
            data.mkdir(exist_ok=True)
            store = f"sqlite:{(data / f'{r.ref.name}-r{r.repetition}.sqlite').resolve()}"
        config = ServeConfig(store=store, amqp_url=self.amqp_url, namespace=self._namespace(r),
                             seed=sc.data.seed_spec())
        self.progress.note(f"starting {r.label} …")
        try:
            r.service = self.launcher.start(r.ref.transport, config,
                                            name=f"{r.ref.name}-r{r.repetition}",
                                            cpus=self.target_cpus)
        except UserError as exc:
            r.fail(f"did not start: {exc}")
            self.progress.end(r.label, f"failed: {r.error}")
            return
        r.url = r.service.url
        gate_error = self._gate(r)
        if gate_error:
            r.fail(gate_error)
            self.progress.end(r.label, f"failed: {r.error}")
            return
        roots = [r.service.pid]
        if get_transport(r.ref.transport).needs_broker:
            pids = broker_pids(self.amqp_url)
            if pids is None:
                self.warnings.append(f"{r.label}: broker processes not found or not readable; "
                                     "CPU per request excludes the broker")
            else:
                roots += pids
        r.probe = ProcessProbe(roots)
        prefix = f"{self.run_id[:15]}-r{r.repetition}"
        specs = [WorkerSpec(r.ref.transport, r.ref.variant, r.url,
                            EngineConfig(sc, i, self.opts.processes, prefix,
                                         record_accepted=get_transport(r.ref.transport)
                                         .needs_broker),
                            self.opts.load_cpus)
                 for i in range(self.opts.processes)]
        r.pool = WorkerPool(specs)
        r.client_probe = ProcessProbe(r.pool.pids)
        try:
            r.pool.wait_ready()
        except RuntimeError as exc:
            r.fail(str(exc))
            self.progress.end(r.label, f"failed: {r.error}")
            return
        r.status = "running"

    def _gate(self, r: TargetRun) -> str | None:
        """The conformance gate: a target that fails it is not measured."""
        from harness.stage.conformance import run_checks

        async def check() -> list[Any]:
            factory = get_transport(r.ref.transport).client_factory(r.ref.variant)
            client = await factory(r.url, timeout=self.scenario.load.timeout_s)
            try:
                return await run_checks(client, self.scenario.data.seed_spec())
            finally:
                await client.close()

        import uvloop

        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                checks = runner.run(check())
        except Exception as exc:  # the client could not even connect
            return f"conformance gate: {type(exc).__name__}: {exc}"
        failed = [c for c in checks if not c.passed]
        r.conformance = f"{len(checks) - len(failed)}/{len(checks)} checks passed"
        if failed:
            names = ", ".join(f"{c.name} ({c.detail})" for c in failed[:3])
            return f"conformance gate: {len(failed)} of {len(checks)} checks failed: {names}"
        return None

    def _begin(self, r: TargetRun, t0: int) -> None:
        sc = self.scenario
        assert r.pool is not None and r.probe is not None
        r.t0_ns = t0
        r.measure_start_ns = t0 + round(sc.warmup_s * NS)
        epoch_ms = time.time() + (r.measure_start_ns - mono()) / NS
        r.results = self.writer.target(r.ref.name, r.ref.transport, r.ref.variant, r.repetition,
                                       epoch_ms)
        results = r.results

        def on_second(m: MergedSecond) -> None:
            results.on_second(m)
            if 0 <= m.second < r.window_seconds:
                r.window_intended += m.intended
                r.window_started += m.started
                end_s = min(m.second + 1.0, sc.duration_s)
                if r.stop_ns is None or r.measure_start_ns + end_s * NS <= r.stop_ns:
                    r.full_intended += m.intended
                    r.full_started += m.started
                    r.full_seconds += end_s - m.second
                    if m.lag is not None:
                        if r.full_lag is None:
                            r.full_lag = new_histogram()
                        r.full_lag.add(m.lag)
            ok = [h for (op, outcome, metric), h in m.hists.items()
                  if outcome == "ok" and metric == "latency" and op != "create_accepted"]
            errors = sum(m.errors.values())
            p99 = None
            if ok:
                merged = new_histogram()
                for h in ok:
                    merged.add(h)
                p99 = percentile_ms(merged, 99)
            self.progress.second(r.label, m.second, m.started, m.intended, p99, errors)

        r.merger = Merger(self.opts.processes, on_second)
        r.next_probe_second = -((round(sc.warmup_s * NS) + NS - 1) // NS)
        r.last_probe = (mono(), r.probe.sample()[0])
        if r.next_probe_second == 0:  # no warm-up: this sample opens the measured window
            r.cpu_at_start = r.last_probe[1]
            r.client_cpu_start = r.client_probe.sample()[0] if r.client_probe else None
        r.pool.start(t0)
        self.progress.begin(r.label, sc.warmup_s, sc.duration_s)

    def _drive(self, runs: list[TargetRun]) -> None:
        """Collect seconds from every generator process, probe once a second, watch the
        targets, until every generator has finished."""
        while True:
            active = [r for r in runs if r.pool is not None and not r.pool.finished]
            if not active:
                break
            due = min(r.measure_start_ns + (r.next_probe_second + 1) * NS for r in active)
            conns = [c for r in active for i, c in enumerate(r.pool.conns)  # type: ignore[union-attr]
                     if i not in r.pool.done]  # type: ignore[union-attr]
            mpc.wait(conns, max(0.0, (due - mono()) / NS))
            for r in active:
                assert r.pool is not None
                self._collect(r, r.pool.poll(0))
                self._probe(r)
                if self._target_died(r):
                    r.pool.stop()

    def _collect(self, r: TargetRun, msgs: list[Message]) -> None:
        """Hand generator messages to the run: seconds to the merger, a process's stats as it
        finishes, and an error as a failure (stopping the other processes); an error while
        an interrupted or failed run stops is kept as a warning."""
        assert r.pool is not None and r.merger is not None
        for kind, index, payload in msgs:
            if kind == "second":
                r.merger.add(index, payload)
            elif kind == "done":
                r.merger.finish(index)
                if payload is not None:
                    r.stats.append(payload)
            elif kind == "error":
                r.merger.finish(index)
                message = f"load process {index}: {str(payload).splitlines()[0]}"
                if r.status == "running":
                    r.fail(message)
                else:  # already stopping: keep the reason without replacing the first one
                    self.warnings.append(f"{r.label}: {message}")
                r.pool.stop()

    def _target_died(self, r: TargetRun) -> bool:
        """Mark a running target whose server has exited failed, with the reason it gave (the
        queue server exits when it loses the broker)."""
        if r.service is None or r.service.alive() or r.status != "running":
            return False
        code = r.service.process.returncode
        if code < 0:  # killed: its last log line is whatever it happened to say before
            r.fail(f"target was killed by {signal.Signals(-code).name} during the run; "
                   f"see logs/{r.service.log_path.name}")
            return True
        reason = _last_line(r.service.log_path)
        r.fail(f"target exited with code {code} during the run"
               + (f" ({reason})" if reason else "")
               + f"; see logs/{r.service.log_path.name}")
        return True

    def _probe(self, r: TargetRun, final: bool = False) -> None:
        assert r.probe is not None and r.results is not None
        now = mono()
        while final or now >= r.measure_start_ns + (r.next_probe_second + 1) * NS:
            cpu, rss = r.probe.sample()
            t = mono()
            assert r.last_probe is not None
            t_prev, cpu_prev = r.last_probe
            pct = (cpu - cpu_prev) / ((t - t_prev) / NS) * 100 if t > t_prev else None
            r.results.resource(r.next_probe_second, ResourceSample(pct, rss / 2**20))
            if r.next_probe_second == -1:  # the sample taken as measurement starts
                r.cpu_at_start = cpu
                if r.client_probe is not None:
                    r.client_cpu_start = r.client_probe.sample()[0]
            elif r.next_probe_second == r.window_seconds - 1 and r.client_probe is not None \
                    and r.client_cpu_start is not None and r.client_cpu_end is None:
                r.client_cpu_end = r.client_probe.sample()[0]  # the measured window ends
            r.last_probe = (t, cpu)
            r.next_probe_second += 1
            if final:
                r.cpu_at_end = cpu
                break

    def _complete(self, r: TargetRun) -> None:
        """Merge what remains, write summary rows, decide the status and saturation."""
        if r.merger is None or r.results is None:
            return
        self._target_died(r)  # also after the load, e.g. while draining
        r.merger.flush_all()
        self._probe(r, final=True)
        sc = self.scenario
        totals = r.merger.totals
        full_lag = r.full_lag
        lag_p99 = percentile_ms(full_lag, 99) if full_lag is not None else None
        waits = sum(s.in_flight_waits for s in r.stats)
        # A failed run is not judged: its stop, not the generator, shaped its last seconds.
        if sc.load.model == "open" and r.full_intended and r.status != "failed":
            achieved = r.full_started / r.full_intended
            r.saturated = achieved < SATURATION_ACHIEVED or (lag_p99 or 0) > SATURATION_LAG_MS
            if r.saturated:
                within = "" if r.stop_ns is None else \
                    f" over the {r.full_seconds:g} s measured before the stop"
                self.warnings.append(
                    f"generator saturated on {r.label}: achieved {achieved:.0%} of the intended "
                    f"rate{within}, schedule lag p99 {lag_p99 or 0:.1f} ms (in-flight limit "
                    f"{sc.load.in_flight} per process reached {waits} times)")
        if totals.clamped:
            self.warnings.append(f"{r.label}: {totals.clamped} values above one hour clamped")
        cpu_s = (r.cpu_at_end - r.cpu_at_start) if r.cpu_at_end is not None \
            and r.cpu_at_start is not None else None
        client_cpu_s = (r.client_cpu_end - r.client_cpu_start) \
            if r.client_cpu_end is not None and r.client_cpu_start is not None else None
        r.rows = r.results.finish(
            totals, measured_s=r.measured_s,
            rates=(r.window_intended, r.window_started, sc.duration_s) if r.stop_ns is None
            else (r.full_intended, r.full_started, r.full_seconds),
            cpu_s=cpu_s,
            client_cpu_us=client_cpu_s * 1e6 / r.window_started
            if client_cpu_s is not None and r.window_started else None,
            rss_mb_max=r.probe.rss_max / 2**20 if r.probe else None,
            saturated=r.saturated)
        if r.status == "running":
            r.status = "ok"
        self.progress.end(r.label, r.status + (f": {r.error}" if r.error else "")
                          + (" (saturated)" if r.saturated else ""))

    def _namespace(self, r: TargetRun) -> str:
        """Queue and exchange names of one target run on the broker."""
        return f"cb-{self.run_id}-{self.token}-{r.ref.name}-r{r.repetition}"

    def _release(self, r: TargetRun) -> None:
        if r.pool is not None:
            r.pool.close()
        if r.service is not None:
            r.service.stop()
            if get_transport(r.ref.transport).needs_broker:
                delete_namespace(self.amqp_url, self._namespace(r))

    def _abort(self, runs: list[TargetRun], status: str) -> None:
        """Stop the generators of unfinished runs, keep what they measured."""
        for r in runs:
            if r.status != "running":
                continue
            r.status, r.error = status, f"{status} during the run"
            r.stopped()
            if r.pool is not None and r.merger is not None:
                r.pool.stop()
                deadline = time.monotonic() + 3  # let the generators flush their seconds
                while not r.pool.finished and time.monotonic() < deadline:
                    self._collect(r, r.pool.poll(0.2))
            with contextlib.suppress(Exception):
                self._complete(r)

    # -- run.json ----------------------------------------------------------------------

    def _finish(self, status: str) -> RunOutcome:
        sc = self.scenario
        targets = [{
            "name": r.ref.name, "transport": r.ref.transport, "client": r.ref.variant,
            "url": redact(r.url), "repetition": r.repetition, "status": r.status,
            "error": redact_text(r.error) if r.error else None, "warmup_s": sc.warmup_s,
            "duration_s": sc.duration_s,
            "measured_s": round(r.measured_s, 3) if r.t0_ns else 0.0,
            "saturated": r.saturated,
            "namespace": self._namespace(r)
            if get_transport(r.ref.transport).needs_broker else None,
            "conformance": r.conformance or None,
            "in_flight_waits": sum(s.in_flight_waits for s in r.stats),
            "log": f"logs/{r.ref.name}-r{r.repetition}.log" if r.service else None,
        } for r in self.runs]
        meta = {
            "status": status,
            "started_at": utc_iso(self.started_at), "ended_at": utc_iso(time.time()),
            "scenario_file": str(self.scenario_file),
            "scenario": sc.to_dict(),
            "arguments": self.opts.arguments(),
            "environment": environment(self.opts),
            "broker": self.broker,
            "generator": {"processes": self.opts.processes,
                          "in_flight_limit": sc.load.in_flight if sc.load.model == "open"
                          else None,
                          "loop": "uvloop", "clock": "CLOCK_MONOTONIC (time.monotonic_ns)",
                          "saturation_rule": f"achieved < {SATURATION_ACHIEVED:.0%} of intended "
                                             f"or schedule lag p99 > {SATURATION_LAG_MS:g} ms"},
            "targets": targets,
            "warnings": self.warnings,
        }
        path = self.writer.finish(meta)
        rows = [row for r in self.runs for row in r.rows]
        failed = [r.label for r in self.runs if r.status == "failed"]
        return RunOutcome(path, status, rows, failed, self.warnings)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C: the partial result was written to `outcome.path`."""

    def __init__(self, outcome: RunOutcome) -> None:
        super().__init__()
        self.outcome = outcome


def _last_line(path: Path) -> str:
    """The last non-empty line of a log (where a server says why it exited), shortened."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    last = next((ln.strip() for ln in reversed(lines) if ln.strip()), "")
    return redact_text(last[:300])


def environment(opts: RunOptions) -> dict[str, Any]:
    packages = {}
    for name in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            packages[name] = importlib.metadata.version(name)
    return {
        "python": platform.python_version(),
        "packages": packages,
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "git_revision": _git_revision(),
        "pinning": {"target_cpus": list(opts.target_cpus) or None,
                    "load_cpus": list(opts.load_cpus) or None},
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git_revision() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("-dirty" if dirty else "")


def run_command(opts: RunOptions, *, report: bool = False,
                console: Console | None = None) -> int:
    """`commbench run`: run, print the summary and the folder; exit 0, 1 (a target failed)
    or raise KeyboardInterrupt (the CLI exits 130) after writing the partial result."""
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    runner = Runner(opts, console)
    try:
        outcome = runner.run()
    except Interrupted as exc:
        console.print(f"interrupted: partial result in {exc.outcome.path}", markup=False)
        raise KeyboardInterrupt from None
    if outcome.rows:
        console.print(summary_table(outcome.rows))
    for w in outcome.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}", soft_wrap=True)
    for label in outcome.failed:
        r = next(x for x in runner.runs if x.label == label)
        console.print(f"[red]failed:[/red] {escape(label)}: {escape(redact_text(r.error or ''))}",
                      soft_wrap=True)
    if report:
        try:
            from reports.html import write_report  # type: ignore[import-not-found]
        except ImportError:
            console.print("note: the HTML report is not available yet (reports.html)")
        else:
            console.print(f"report: {write_report(outcome.path)}", markup=False)
    console.print(f"results: {outcome.path}", markup=False, soft_wrap=True)
    return 1 if outcome.failed else 0
