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

    def stopped(self) -> None:
        """The measured window ends now (an interruption or a failure during the load)."""
        if self.window.stop() and self.meter is not None:
            self.meter.stop_client()
