"""Locust runs → the result folder of results/README.md (`commbench-run/1`).

No gevent here: this is plain bookkeeping, so it is testable on its own and the CLI may
import it (for LocustConfig) without gevent's monkey-patching reaching commbench.

- A process that runs users (locust's local runner or a worker) has a `NodeRecorder`: the
  project's Recorder, fed from locust's `events.request`, closing one-second HdrHistograms
  and handing them on (to the collector in the same process, or to the master as a locust
  message: `to_wire`/`from_wire`).
- The process that owns the test (local runner or master) has a `ResultCollector`: the
  project's Merger and ResultWriter, one result folder per locust test (test_start →
  test_stop), with the target's CPU and memory sampled once a second when commbench
  started the target.

Seconds are bucketed on the wall clock (CLOCK_REALTIME), so workers on other machines land
in the same seconds as the master; service time itself is measured on CLOCK_MONOTONIC
inside the coroutine. Locust is a closed loop: latency equals service time.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.load.recorder import ACCEPTED, NS, Merger, SecondRecord, Totals
from harness.locust.node import LocustConfig
from harness.run.results import ResourceSample, ResultWriter, TargetResults, run_id_for, utc_iso
from harness.scenario import LoadSpec

CLOSED_LOOP_WARNING = ("locust drives a closed loop: each user waits for its answer before "
                       "the next request, so latency = service time and a stalled target "
                       "is not charged for the requests it kept from being sent "
                       "(no coordinated-omission correction)")
LOCUST_PACKAGES = ("locust", "gevent", "greenlet")


# -- the process that owns the test ----------------------------------------------------------

@dataclass
class _Test:
    run_id: str
    writer: ResultWriter
    results: TargetResults
    merger: Merger
    nodes: dict[str, int]  # node id → merger process index
    start_epoch_ns: int
    measure_start_ns: int
    warmup_s: float
    started_at: float
    done: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)
    unknown_nodes: set[str] = field(default_factory=set)
    node_info: dict[str, dict[str, int]] = field(default_factory=dict)
    max_users: int = 0
    next_probe_second: int = 0
    last_probe: tuple[int, float | None] | None = None
    cpu_at_start: float | None = None
    cpu_at_end: float | None = None
    rss_max: float | None = None


class ResultCollector:
    """One result folder per locust test, in the local runner or the master."""

    def __init__(self, config: LocustConfig, url: str, mode: str) -> None:
        self.config = config
        self.scenario = config.scenario()
        self.url = url
        self.mode = mode  # "local" | "master"
        self.test: _Test | None = None
        self.finished: list[Path] = []
        self._probe: Any = None
        if config.target_pids:
            from harness.run.probes import ProcessProbe

            self._probe = ProcessProbe(config.target_pids)

    @property
    def warmup_s(self) -> float:
        return self.config.warmup(self.scenario)

    def begin(self, start_epoch_ns: int, nodes: list[str]) -> _Test:
        """A locust test started; `nodes` are the processes that will send seconds."""
        if self.test is not None:
            self.finish(time.time_ns(), status="partial")
        ref = self.config.ref
        run_id = run_id_for(f"{self.scenario.name}-locust")
        results_dir = Path(self.config.results_dir)
        results_dir.mkdir(parents=True, exist_ok=True)
        writer = ResultWriter(results_dir, _unique(results_dir, run_id))
        warm_ns = round(self.warmup_s * NS)
        measure_start = start_epoch_ns + warm_ns
        results = writer.target(ref.name, ref.transport, ref.variant, 1, measure_start / NS)
        merger = Merger(max(1, len(nodes)), results.on_second)
        t = _Test(run_id=writer.run_id, writer=writer, results=results, merger=merger,
                  nodes={n: i for i, n in enumerate(nodes)}, start_epoch_ns=start_epoch_ns,
                  measure_start_ns=measure_start, warmup_s=self.warmup_s,
                  started_at=start_epoch_ns / NS,
                  next_probe_second=-((warm_ns + NS - 1) // NS))
        t.last_probe = (time.time_ns(), self._sample(t)[0])
        if t.next_probe_second == 0:
            t.cpu_at_start = t.last_probe[1]
        self.test = t
        return t

    # -- seconds from the nodes --------------------------------------------------------

    def add(self, node: str, rec: SecondRecord) -> None:
        t = self.test
        if t is None:
            return
        index = t.nodes.get(node)
        if index is None or node in t.done:
            t.unknown_nodes.add(node)  # joined after the test started: not merged
            return
        t.merger.add(index, rec)

    def node_done(self, node: str, info: dict[str, int] | None = None) -> None:
        t = self.test
        if t is None or node not in t.nodes or node in t.done:
            return
        t.done.add(node)
        t.node_info[node] = dict(info or {})
        t.merger.finish(t.nodes[node])

    def node_gone(self, node: str) -> None:
        """A worker stopped answering: stop waiting for its seconds."""
        t = self.test
        if t is not None and node in t.nodes and node not in t.done:
            t.gone.add(node)
            self.node_done(node)

    @property
    def waiting_for(self) -> set[str]:
        t = self.test
        return set() if t is None else set(t.nodes) - t.done

    def users(self, count: int) -> None:
        if self.test is not None:
            self.test.max_users = max(self.test.max_users, count)

    # -- resources -----------------------------------------------------------------------

    def _sample(self, t: _Test) -> tuple[float | None, float | None]:
        if self._probe is None:
            return None, None
        cpu, rss = self._probe.sample()
        t.rss_max = max(t.rss_max or 0.0, rss / 2**20)
        return cpu, rss / 2**20

    def probe(self, now_epoch_ns: int, final: bool = False) -> None:
        """Sample the target once for every second that ended (and once more at the end):
        timeline rows are written as their second's sample comes in."""
        if self.test is not None:
            self._probe_test(self.test, now_epoch_ns, final)

    def _probe_test(self, t: _Test, now_epoch_ns: int, final: bool) -> None:
        while final or now_epoch_ns >= t.measure_start_ns + (t.next_probe_second + 1) * NS:
            cpu, rss = self._sample(t)
            now = time.time_ns()
            pct = None
            if cpu is not None and t.last_probe is not None and t.last_probe[1] is not None \
                    and now > t.last_probe[0]:
                pct = (cpu - t.last_probe[1]) / ((now - t.last_probe[0]) / NS) * 100
            t.results.resource(t.next_probe_second, ResourceSample(pct, rss))
            if t.next_probe_second == -1:
                t.cpu_at_start = cpu
            t.last_probe = (now, cpu)
            t.next_probe_second += 1
            if final:
                t.cpu_at_end = cpu
                break

    # -- the end ---------------------------------------------------------------------------

    def finish(self, stop_epoch_ns: int, *, status: str = "complete",
               extra_warnings: list[str] | None = None,
               locust_stats: dict[str, Any] | None = None) -> Path | None:
        """Merge what came in, write summary, errors and run.json, rename the folder."""
        t, self.test = self.test, None
        if t is None:
            return None
        warnings = [CLOSED_LOOP_WARNING, *(extra_warnings or [])]
        missing = sorted(set(t.nodes) - t.done)
        if missing:
            warnings.append(f"{len(missing)} locust worker(s) did not send their last seconds "
                            f"({', '.join(missing)}): the result misses their tail")
            status = "partial"
        if t.gone:
            warnings.append(f"worker(s) {', '.join(sorted(t.gone))} stopped answering during "
                            "the test")
        if t.unknown_nodes:
            warnings.append(f"worker(s) {', '.join(sorted(t.unknown_nodes))} joined after the "
                            "test started: their requests are in locust's statistics but not "
                            "in this result")
        late = sum(i.get("late", 0) for i in t.node_info.values())
        if late:
            warnings.append(f"{late} results reached the recorder after their second was "
                            "closed (a starved locust process) and were counted one or more "
                            "seconds late")
        if not self.config.target_pids:
            warnings.append("the target was not started by commbench (--url): no CPU or "
                            "memory figures; give --pid NAME=PID to measure them")
        recorded = sum(i.get("requests", 0) for i in t.node_info.values())
        counted = (locust_stats or {}).get("num_requests")
        if not missing and counted is not None and counted > recorded:
            warnings.append(f"locust counted {counted} requests but only {recorded} reached "
                            f"this result: {counted - recorded} missing")
            status = "partial"
        t.merger.flush_all()
        self._probe_test(t, stop_epoch_ns, final=True)
        duration = (stop_epoch_ns - t.measure_start_ns) / NS
        if duration <= 0:
            warnings.append(f"the test stopped {-duration:.1f} s before its {t.warmup_s:g} s "
                            "warm-up ended: nothing was measured")
            status = "partial"
        totals = t.merger.totals
        if totals.clamped:
            warnings.append(f"{totals.clamped} values above one hour clamped")
        cpu_s = (t.cpu_at_end - t.cpu_at_start) if t.cpu_at_end is not None \
            and t.cpu_at_start is not None else None
        t.results.finish(totals, duration_s=max(duration, 1e-9), cpu_s=cpu_s,
                         rss_mb_max=t.rss_max, saturated=False)
        path = t.writer.finish(self._meta(t, status, duration, warnings, locust_stats))
        self.finished.append(path)
        self._announce(path, status, measured_count(totals), warnings)
        return path

    def _announce(self, path: Path, status: str, measured: int, warnings: list[str]) -> None:
        """Tell the CLI (which prints it when locust exits) what this test wrote."""
        if self.config.manifest:
            line = json.dumps({"path": str(path), "status": status, "measured": measured,
                               "warnings": warnings})
            with open(self.config.manifest, "a", encoding="utf-8") as f:
                f.write(line + "\n")

    def _meta(self, t: _Test, status: str, duration: float, warnings: list[str],
              locust_stats: dict[str, Any] | None) -> dict[str, Any]:
        cfg, sc, ref = self.config, self.scenario, self.config.ref
        # What ran, as recorded, not a scenario file: built without the file's rules (users may
        # be 0 when none started).
        load = LoadSpec.model_construct(model="closed", users=t.max_users,
                                        think_time=sc.load.think_time_s, timeout=sc.load.timeout_s)
        as_run = sc.model_copy(update={"targets": (ref,), "duration_s": max(duration, 0.0),
                                       "warmup_s": t.warmup_s, "load": load})
        env = dict(cfg.environment)
        env["packages"] = dict(env.get("packages") or {})
        for name in LOCUST_PACKAGES:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                env["packages"][name] = importlib.metadata.version(name)
        return {
            "status": status,
            "started_at": utc_iso(t.started_at), "ended_at": utc_iso(time.time()),
            "scenario_file": cfg.scenario_file,
            "scenario": as_run.to_dict(),
            "arguments": cfg.arguments,
            "environment": env,
            "generator": {
                "kind": "locust", "mode": self.mode, "processes": max(1, len(t.nodes)),
                "workers": sorted(t.nodes) if self.mode == "master" else [],
                "users": t.max_users, "in_flight_limit": None,
                "loop": "asyncio loop in a native thread per locust process "
                        f"({os.environ.get('COMMBENCH_LOCUST_LOOP', 'uvloop')}), "
                        "one client per process",
                "clock": "seconds on CLOCK_REALTIME; service time on CLOCK_MONOTONIC inside "
                         "the coroutine",
                "latency": "closed loop: latency = service time",
            },
            "targets": [{
                "name": ref.name, "transport": ref.transport, "client": ref.variant,
                "url": self.url, "repetition": 1, "status": "ok" if status == "complete"
                else "interrupted", "error": None if status == "complete"
                else "stopped before the end of the test",
                "warmup_s": t.warmup_s, "duration_s": max(duration, 0.0), "saturated": False,
                "conformance": cfg.arguments.get("conformance"),
                "users": t.max_users, "log": None, "namespace": cfg.namespace,
                "server": ref.server_name, **cfg.reach,
            }],
            "locust": locust_stats or {},
            "warnings": warnings,
        }


def measured_count(totals: Totals) -> int:
    """Requests (ok or failed) completed in the measured window, queue accepts excluded."""
    return sum(h.get_total_count() for (op, _outcome, metric), h in totals.hists.items()
               if metric == "latency" and op != ACCEPTED)


def _unique(results_dir: Path, run_id: str) -> str:
    """Two tests started within one second (web UI) get distinct folders."""
    candidate, n = run_id, 2
    while (results_dir / candidate).exists() or (results_dir / f".partial-{candidate}").exists():
        candidate = f"{run_id}-{n}"
        n += 1
    return candidate

