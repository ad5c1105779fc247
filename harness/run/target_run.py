"""One (target, repetition) of a run: what it stood up, what it measured, how it ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.load.engine import EngineStats
from harness.load.recorder import Merger
from harness.load.workers import WorkerPool
from harness.run.probes import Meter
from harness.run.results import TargetResults
from harness.run.window import Window
from harness.scenario import Scenario, TargetRef
from harness.stage.stage import StagedTarget


@dataclass
class TargetRun:
    """One (target, repetition): its staged target, its generator processes and results."""

    ref: TargetRef
    repetition: int
    scenario: Scenario
    status: str = "not_run"
    error: str | None = None
    saturated: bool = False
    target: StagedTarget | None = None
    pool: WorkerPool | None = None
    meter: Meter | None = None
    results: TargetResults | None = None
    merger: Merger | None = None
    window: Window = field(init=False)
    stats: list[EngineStats] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.window = Window(self.scenario.duration_s, self.scenario.warmup_s)

    @property
    def label(self) -> str:
        return f"{self.ref.name} r{self.repetition}"

    @property
    def name(self) -> str:
        return f"{self.ref.name}-r{self.repetition}"

    def fail(self, message: str) -> None:
        if self.status not in ("failed", "interrupted"):
            self.status, self.error = "failed", message
            self.stopped()

    def record(self, namespace: str | None) -> dict[str, Any]:
        """This target run as run.json's `targets` lists it."""
        from targets.redact import redact, redact_text

        t, sc = self.target, self.scenario
        return {
            "name": self.ref.name, "transport": self.ref.transport, "client": self.ref.variant,
            "url": redact(t.url if t else ""), "repetition": self.repetition,
            "status": self.status, "error": redact_text(self.error) if self.error else None,
            "warmup_s": sc.warmup_s, "duration_s": sc.duration_s,
            "measured_s": round(self.window.measured_s, 3) if self.window.began else 0.0,
            "saturated": self.saturated, "namespace": namespace,
            "conformance": (t.conformance if t else "") or None,
            "in_flight_waits": sum(s.in_flight_waits for s in self.stats),
            "log": f"logs/{self.name}.log" if t and t.services else None,
        }

    def stopped(self) -> None:
        """The measured window ends now (an interruption or a failure during the load)."""
        if self.window.stop() and self.meter is not None:
            self.meter.stop_client()
