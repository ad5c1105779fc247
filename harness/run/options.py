"""What `commbench run` was asked to do, and what it hands back."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.scenario import FaultSpec
from targets.redact import redact
from targets.serving import DEFAULT_AMQP_URL


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
    faults: tuple[FaultSpec, ...] = ()  # --fault, added to the scenario's
    urls: dict[str, str] = field(default_factory=dict)  # --url: transport → running target
    pids: dict[str, str] = field(default_factory=dict)  # --pid: transport → "PID[,PID…]"

    def arguments(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "targets": self.targets, "rate": self.rate,
                "duration": self.duration_s, "repetitions": self.repetitions,
                "processes": self.processes, "target_cpus": list(self.target_cpus),
                "load_cpus": list(self.load_cpus), "concurrent": self.concurrent,
                "results_dir": str(self.results_dir), "amqp_url": redact(self.amqp_url),
                "url": {k: redact(v) for k, v in self.urls.items()} or None,
                "pid": dict(self.pids) or None}


@dataclass
class RunOutcome:
    path: Path
    status: str
    rows: list[dict[str, Any]]
    failed: list[str]
    warnings: list[str]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C: the partial result was written to `outcome.path`."""

    def __init__(self, outcome: RunOutcome) -> None:
        super().__init__()
        self.outcome = outcome


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
