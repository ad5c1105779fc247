"""What every locust process shares: its configuration from the CLI, the messages between
master and workers, and the per-process recorder of requests (`NodeRecorder`).

No gevent here (see harness/locust/results.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.load.recorder import ACCEPTED, NS, Recorder, SecondRecord
from harness.scenario import Scenario, TargetRef, load_scenario
from targets.core.errors import OrderError

CONFIG_ENV = "COMMBENCH_LOCUST"
CLOSE_SLACK_NS = NS  # a second is closed one second after it ends: events reach the
#                      recorder from greenlets, a little after the coroutine finished
MESSAGE_START = "commbench_start"  # master → workers: the test's time base, warm-up, id token
MESSAGE_STOP = "commbench_stop"  # master → workers: stop your users and flush every second
MESSAGE_SECOND = "commbench_second"  # worker → master: one closed second
MESSAGE_DONE = "commbench_done"  # worker → master: nothing more for this test


@dataclass(frozen=True)
class LocustConfig:
    """What the CLI tells the locust process (JSON in the COMMBENCH_LOCUST variable)."""

    scenario_file: str
    transport: str
    variant: str
    server: str | None = None  # the server variant (None: the transport's default)
    url: str | None = None  # the target commbench staged: where an empty host field goes
    results_dir: str = "results"
    warmup_s: float | None = None  # None: the scenario's warm-up
    target_pids: tuple[int, ...] = ()  # processes whose CPU and memory are charged
    target_started: bool = False  # commbench started the target (else --url)
    reach: dict[str, Any] = field(default_factory=dict)  # run.json: measured_by_url, cpu, pids
    target_cpus: tuple[int, ...] = ()
    load_cpus: tuple[int, ...] = ()
    arguments: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)  # run.json's, taken by the CLI
    namespace: str | None = None  # the queue target's broker namespace (run.json)
    manifest: str | None = None  # a file the CLI reads back: one JSON line per result folder

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> LocustConfig:
        environ = dict(os.environ) if environ is None else environ
        raw = environ.get(CONFIG_ENV)
        if not raw:
            raise RuntimeError(f"{CONFIG_ENV} is not set: start locust through "
                               "`commbench locust SCENARIO --target NAME`")
        d = json.loads(raw)
        for key in ("target_pids", "target_cpus", "load_cpus"):
            d[key] = tuple(d.get(key) or ())
        return cls(**d)

    @property
    def ref(self) -> TargetRef:
        return TargetRef(self.transport, self.variant, self.server)

    def scenario(self) -> Scenario:
        return load_scenario(self.scenario_file)

    def warmup(self, sc: Scenario) -> float:
        return sc.warmup_s if self.warmup_s is None else self.warmup_s


def error_kind(exc: BaseException | None) -> str | None:
    """The error kind recorded in errors.csv: the shared kinds for domain and transport
    errors, the exception's type name for anything else (a client bug)."""
    if exc is None:
        return None
    if isinstance(exc, OrderError):
        return exc.kind
    return type(exc).__name__


# -- the wire form of a closed second (locust messages are msgpack: no tuples as keys) ----

def to_wire(rec: SecondRecord) -> dict[str, Any]:
    return {"second": rec.second,
            "hists": [[op, outcome, metric, enc] for (op, outcome, metric), enc
                      in rec.hists.items()],
            "errors": [[op, kind, n] for (op, kind), n in rec.errors.items()],
            "intended": rec.intended, "started": rec.started, "clamped": rec.clamped,
            "warmup_spill": rec.warmup_spill}


def from_wire(d: dict[str, Any]) -> SecondRecord:
    return SecondRecord(
        second=int(d["second"]),
        hists={(op, outcome, metric): bytes(enc) for op, outcome, metric, enc in d["hists"]},
        errors={(op, kind): int(n) for op, kind, n in d["errors"]},
        intended=int(d["intended"]), started=int(d["started"]), clamped=int(d["clamped"]),
        warmup_spill=int(d["warmup_spill"]))


# -- a process that runs users -------------------------------------------------------------

class NodeRecorder:
    """Records the requests of one locust process into one-second histograms.

    `request` is called from locust's events.request listener (the gevent thread), with the
    service time measured inside the coroutine and the wall-clock moment it completed.
    A result that reaches the recorder after its second was closed (a greenlet starved for
    over a second) is counted in the oldest open second and reported as `late`.
    """

    def __init__(self, sink: Callable[[SecondRecord], None]) -> None:
        self._sink = sink
        self._rec: Recorder | None = None
        self.measure_start_ns = 0
        self._open_from_ns = 0  # results completing before this go to the oldest open second
        self.requests = 0
        self.late = 0

    @property
    def active(self) -> bool:
        return self._rec is not None

    def begin(self, start_epoch_ns: int, warmup_s: float) -> None:
        warm_ns = round(warmup_s * NS)
        self.measure_start_ns = start_epoch_ns + warm_ns
        first = -((warm_ns + NS - 1) // NS)
        self._open_from_ns = self.measure_start_ns + first * NS
        self._rec = Recorder(self.measure_start_ns, first, self._sink)
        self.requests = self.late = 0

    def request(self, op: str, kind: str | None, service_ns: int, done_epoch_ns: int,
                accepted_ns: int | None = None) -> None:
        rec = self._rec
        if rec is None:
            return
        if done_epoch_ns < self._open_from_ns:
            self.late += 1
            done_epoch_ns = self._open_from_ns
        sent = done_epoch_ns - service_ns
        # A send in a second already closed is counted where the request completed.
        rec.started(max(sent, self._open_from_ns), 0)
        rec.record(op, kind, sent, sent, done_epoch_ns)
        if accepted_ns is not None and kind is None:
            rec.record(ACCEPTED, None, sent, sent, sent + accepted_ns)
        self.requests += 1

    def tick(self, now_epoch_ns: int) -> None:
        """Close every second that ended more than CLOSE_SLACK_NS ago."""
        rec = self._rec
        if rec is None:
            return
        limit = now_epoch_ns - CLOSE_SLACK_NS
        current = (limit - self.measure_start_ns) // NS  # seconds before this one close
        boundary = self.measure_start_ns + current * NS
        if boundary > self._open_from_ns:
            rec.close_until(limit)
            self._open_from_ns = boundary

    def end(self) -> dict[str, int]:
        """Close everything (the test stopped); what to tell the collector."""
        rec, self._rec = self._rec, None
        if rec is not None:
            rec.close_all()
        return {"requests": self.requests, "late": self.late}
