"""One (target, repetition) of a run: what it stood up, what it measured, how it ended."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.faults.cascade import Cascade
from harness.faults.injector import Injector
from harness.load.engine import EngineStats
from harness.load.heap import GcPauses
from harness.load.recorder import Merger
from harness.load.workers import WorkerPool
from harness.run.consistency import Consistency
from harness.run.policy_probe import PolicyProbe
from harness.run.probes import Meter
from harness.run.results import ResourceSample, TargetResults, utc_iso
from harness.run.window import SATURATION_RULE, Saturation, Window
from harness.scenario import Scenario, TargetRef
from harness.scenario.policies import Policies
from harness.scenario.slo import check
from harness.stage.depths import DepthProbe
from harness.stage.stage import StagedTarget
from targets.redact import redact, redact_text
from targets.registry import get_transport


@dataclass
class TargetRun:
    """One (target, repetition): its staged target, its generator processes and results."""

    ref: TargetRef
    repetition: int
    scenario: Scenario
    status: str = "not_run"
    error: str | None = None
    judged: Saturation | None = None  # the saturation rule's figures and call (open loop)
    probed: bool = True  # its processes' CPU and memory are measured (not: reached by URL)
    target: StagedTarget | None = None
    pool: WorkerPool | None = None
    meter: Meter | None = None
    results: TargetResults | None = None
    merger: Merger | None = None
    window: Window = field(init=False)
    stats: list[EngineStats] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    reconciliation: dict[str, Any] | None = None  # chain topology: the stores' accounting
    injector: Injector | None = None  # its faults, when the scenario has some
    depths: DepthProbe | None = None  # a queue target's queues, sampled each second
    cascade: Cascade | None = None
    policies: PolicyProbe | None = None  # the edge's policy counters, read each second
    consistency: Consistency | None = None  # eventsourced figures, read-your-writes checks
    # The policies this run's edge applies: the scenario's, unless the run is given others
    # (one value, named by its label, so variants of one scenario can be swapped per run).
    policy_set: Policies = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.window = Window(self.scenario.duration_s, self.scenario.warmup_s)
        if self.policy_set is None:
            self.policy_set = self.scenario.policies

    @property
    def row(self) -> str:
        """What every result file calls this target: the target's name, and with policy
        variants the variant's too (`rest~timeouts+retries`), so reports set them apart."""
        variant = f"~{self.policy_set.label}" if self.scenario.variants else ""
        return f"{self.ref.name}{variant}"

    @property
    def broker_name(self) -> str:
        """`name` as an AMQP exchange name may spell it (letters, digits, - _ . :): a
        variant's `~` and `+` become `.v.` and `:`, which a variant's name cannot hold."""
        return self.name.replace("~", ".v.").replace("+", ":")

    @property
    def label(self) -> str:
        return f"{self.row} r{self.repetition}"

    @property
    def name(self) -> str:
        return f"{self.row}-r{self.repetition}"

    def fail(self, message: str) -> None:
        if self.status not in ("failed", "interrupted"):
            self.status, self.error = "failed", message
            self.stopped()

    def resource(self, second: int, cpu_percent: float | None, rss_mb: float) -> None:
        """One second's probe samples (the Meter's record): its processes' CPU and memory
        (none when reached by URL), for a queue target its queues' depths, and with
        [policies] what they did in that second."""
        assert self.results is not None
        policy = None if self.policies is None else self.policies.sample(
            second, self.window.start_ns, 0 <= second < self.window.seconds)
        self.results.resource(second, ResourceSample(cpu_percent, rss_mb, policy) if self.probed
                              else ResourceSample(None, None, policy))
        # one depth row per measured second: the closing sample after the window is not one
        if self.depths is not None and 0 <= second < self.window.seconds:
            self.results.queue_depths(second, self.depths.sample())
        if self.consistency is not None:
            self.consistency.sample(second)

    def watch_consistency(self, listeners: list[Any]) -> None:
        """Read the eventsourced server's figures each second from now, and count the
        generator's read-backs when the scenario asks (added to the run's `listeners`)."""
        from harness.stage.projection import ProjectionProbe

        self.consistency = Consistency.of(
            self.row, self.repetition, self.window.seconds,
            ProjectionProbe.of(self.target) if self.target else None,
            self.scenario.read_your_writes)
        if self.consistency is not None:
            self.consistency.begin()
            listeners.append(self.consistency)

    def check_consistency(self, folder: Path) -> list[str]:
        """After the load: the read model against its log (a warning when they differ), and
        the run's row of consistency.csv."""
        if self.consistency is None:
            return []
        if self.status != "failed":
            self.consistency.finish()
        self.consistency.write_run(folder)
        check = self.consistency.check or {}
        if check.get("consistent") is not False and not check.get("error"):
            return []
        return [f"{self.label}: the read model does not match its log: {check}"]

    def watch_policies(self, folder: Path) -> None:
        """Read the edge's policy counters each second from now (when it runs [policies])."""
        if self.target is not None:
            self.policies = PolicyProbe.of(self.target, self.policy_set.to_wire(),
                                           self.row, self.repetition, folder)

    def stopped(self) -> None:
        """The measured window ends now (an interruption or a failure during the load)."""
        if self.window.stop() and self.meter is not None:
            self.meter.stop_client()

    def died(self) -> bool:
        """Mark a running target failed when one of its services has exited (not killed by
        a fault), with the reason it gave (the queue server exits when it loses the broker)."""
        dead = self.target.dead() if self.target is not None else None
        if dead is None or self.status != "running":
            return False
        code = dead.process.returncode
        if code < 0:  # killed: its last log line is whatever it happened to say before
            self.fail(f"target was killed by {signal.Signals(-code).name} during the run; "
                   f"see logs/{dead.log_path.name}")
            return True
        reason = dead.last_line()
        self.fail(f"target exited with code {code} during the run"
               + (f" ({reason})" if reason else "")
               + f"; see logs/{dead.log_path.name}")
        return True

    def faults_record(self) -> dict[str, Any]:
        """The faults as applied and the cascade numbers at the edge (run.json)."""
        if self.injector is None:
            return {}
        events = self.injector.events
        # a fault that did not apply (a broker fault on a transport without one) has no cascade
        windows = [(e["start_s"], e["end_s"], e["detail"]) for e in events if e["applied"]]
        return {"faults": events,
                "cascade": self.cascade.numbers(windows) if self.cascade else []}

    def policies_record(self) -> dict[str, Any] | None:
        """What the policies did in the measured window (run.json `policies`), with the parts
        this transport does not apply named."""
        parts = get_transport(self.ref.transport).policy_parts
        missing = [p for p in self.policy_set.on if p not in parts]
        note = (f"{self.ref.transport} does not apply {', '.join(missing)}: this target ran "
                "without them" if missing else "")
        if self.policies is not None:
            creates = next((int(r["count"]) for r in self.rows if r["operation"] == "create"),
                           None)
            return {**self.policies.record(self.policy_set.label, creates),
                    **({"not_applied": missing, "note": note} if missing else {})}
        if self.policy_set.on:
            return {"name": self.policy_set.label, "applied": False, "not_applied": missing,
                    "note": note}
        if self.scenario.variants and "retries" in parts:
            return {"name": self.policy_set.label, "applied": True, "counts": None,
                    "amplification": 1.0, "attempts_per_create": None,
                    "note": "no policy on: one attempt per call, by construction"}
        return None

    @property
    def flag(self) -> str:
        """The saturation rule's call: 'saturated', 'lagging' or '' (see Saturation.flag)."""
        return (self.judged.flag if self.judged is not None else None) or ""

    @property
    def saturated(self) -> bool:
        """Flagged either way: its figures may be partly the generator's."""
        return bool(self.flag)

    @property
    def flag_note(self) -> str:
        """After its end line: why its figures are not the target's alone ('' if they are)."""
        return {"lagging": " (generator lagging)", "saturated": " (saturated)"}.get(self.flag, "")

    def record(self, namespace: str | None, reach: dict[str, Any]) -> dict[str, Any]:
        """This run's row of run.json `targets`; `reach` says how it was reached and probed."""
        sc, target = self.scenario, self.target
        return {
            "name": self.row, "transport": self.ref.transport, "client": self.ref.variant,
            "probe_client": self.ref.probe,
            "server": self.ref.server_name, "url": redact(target.url if target else ""),
            "repetition": self.repetition, "status": self.status,
            "error": redact_text(self.error) if self.error else None,
            "warmup_s": sc.warmup_s, "duration_s": sc.duration_s,
            "measured_s": round(self.window.measured_s, 3) if self.window.began else 0.0,
            "saturated": self.saturated,
            "schedule": self.judged.record() if self.judged is not None else None,
            "namespace": namespace,
            "conformance": (target.conformance if target else "") or None,
            "checks_passed": list(target.checks_passed) if target else [],
            "in_flight_waits": sum(s.in_flight_waits for s in self.stats),
            "gc": _gc_sum(self.stats).record(),
            "log": f"logs/{self.name}.log" if target and target.services else None,
            "topology": sc.topology,
            "services": self.meter.services_record(self.window.started)
            if self.meter is not None and target and len(target.services) > 1 else None,
            "reconciliation": self.reconciliation,
            "policies": self.policies_record(),
            "consistency": self.consistency.record() if self.consistency else None,
            **self.faults_record(),
            **reach,
        }


def _gc_sum(stats: Iterable[EngineStats]) -> GcPauses:
    total = GcPauses()
    for s in stats:
        total.add(s.gc)
    return total


def probe_notes(refs: Iterable[TargetRef]) -> list[str]:
    """One line per target driven by a probe client, for the run's warnings."""
    return [f"{ref.name}: driven by the probe client, a minimal HTTP/1.1 client, not a "
            "production client: its figures are the server's with almost no client cost; "
            "the difference to the same server with a production client is that client's cost"
            for ref in dict.fromkeys(refs) if ref.probe]


def run_meta(runner: Any, status: str, targets: list[dict[str, Any]]) -> dict[str, Any]:
    """run.json of a `commbench run` (harness.run.runner.Runner), with its target rows."""
    sc, opts = runner.scenario, runner.opts
    return {
        "status": status,
        "started_at": utc_iso(runner.started_at), "ended_at": utc_iso(time.time()),
        "scenario_file": str(runner.scenario_file),
        "scenario": sc.to_dict(),
        "arguments": opts.arguments(),
        "environment": runner.environment,
        "broker": runner.broker,
        "generator": {"processes": opts.processes, "processes_auto": opts.processes_auto,
                      "in_flight_limit": sc.load.in_flight if sc.load.model == "open" else None,
                      "loop": "uvloop", "clock": "CLOCK_MONOTONIC (time.monotonic_ns)",
                      "saturation_rule": SATURATION_RULE},
        "targets": targets,
        "warnings": runner.warnings,
        **({"slo": slo_verdicts(sc, runner.runs)} if sc.slo else {}),
    }


def slo_verdicts(sc: Scenario, runs: list[TargetRun]) -> list[dict[str, Any]]:
    """The scenario's [slo] on every target run that completed (a failed one exits 1
    anyway, and its figures cover only part of the window)."""
    return check(sc.slo, [row for r in runs if r.status == "ok" for row in r.rows])
