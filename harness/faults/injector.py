"""Applies a target run's faults on their timeline, outside the measured path: signals to a
named service's process group (kill, pause), its control socket (delay, errors, crash; the
eventsourced projector's crash and restart), or the private broker's control tool (broker).

The runner calls `tick()` from its collection loop, which wakes for `due_ns` as it wakes for
probes, so a fault starts within a few milliseconds of its planned time; what actually
happened (start, end, detail, any error) is recorded, and `finish()` ends every fault still
on (a paused service is resumed, a killed one restarted) on every exit path.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import UserError
from harness.load.recorder import NS
from harness.scenario import FaultSpec
from harness.stage.projection import ProjectionProbe
from harness.stage.stage import Stage, StagedTarget

FAULT_COLUMNS = ("target", "repetition", "service", "kind", "planned_start_s", "planned_end_s",
                 "start_s", "end_s", "detail", "error", "applied")


@dataclass
class _Active:
    fault: FaultSpec
    start_s: float
    error: str = ""
    detail: str = ""  # what happened beyond the plan (e.g. a transport without a broker)


class Injector:
    def __init__(self, stage: Stage, target: StagedTarget, faults: Sequence[FaultSpec],
                 window_start_ns: int,
                 restarted: Callable[[str, int], None] = lambda role, pid: None) -> None:
        self.stage, self.target, self.t0 = stage, target, window_start_ns
        self.restarted = restarted  # (service, new pid): the probes follow the new process
        # (when, order, fault, "start" | "end"); ends before starts at the same instant
        self._plan = sorted([(f.at_s, 1, n, "start") for n, f in enumerate(faults)]
                            + [(f.end_s, 0, n, "end") for n, f in enumerate(faults)])
        self._faults = list(faults)
        self._active: dict[int, _Active] = {}
        self.events: list[dict[str, Any]] = []

    @property
    def due_ns(self) -> int | None:
        return self.t0 + round(self._plan[0][0] * NS) if self._plan else None

    def _now_s(self) -> float:
        return (time.monotonic_ns() - self.t0) / NS

    def tick(self) -> None:
        while self._plan and self.due_ns is not None and time.monotonic_ns() >= self.due_ns:
            _, _, n, edge = self._plan.pop(0)
            (self._start if edge == "start" else self._end)(n)

    def finish(self) -> None:
        """End every fault still on (an interrupted or failed run) and forget the rest."""
        for n in list(self._active):
            self._end(n)
        self._plan.clear()

    def _start(self, n: int) -> None:
        f = self._faults[n]
        active = self._active[n] = _Active(f, round(self._now_s(), 3))
        try:
            if f.kind == "broker":
                if not self.stage.switch_broker(self.target, on=False):
                    active.detail = f"not applied: {self.target.ref.transport} uses no broker"
                return
            if f.kind == "projector":
                probe = ProjectionProbe.of(self.target)
                if probe is None:
                    transport = self.target.ref.transport
                    active.detail = (f"not applied: {transport} has no projector"
                                     if transport != "eventsourced" else
                                     "not applied: reached by URL, its control socket is not ours")
                else:
                    probe.projector(running=False)
                return
            service = self._service(f)
            if f.kind in ("kill", "crash"):
                self.target.down.add(f.service)
            if f.kind == "kill":
                service.signal(signal.SIGKILL)
            elif f.kind == "pause":
                service.signal(signal.SIGSTOP)
            else:
                self._control(f, on=True)
        except (UserError, OSError) as exc:
            active.error = str(exc)

    def _end(self, n: int) -> None:
        active = self._active.pop(n, None)
        if active is None:
            return
        f = active.fault
        try:
            if f.kind == "broker":
                if not active.detail:  # it was stopped (or tried): start it whatever happened
                    self.stage.switch_broker(self.target, on=True)
            elif f.kind == "projector":
                if not active.detail:
                    probe = ProjectionProbe.of(self.target)
                    assert probe is not None
                    probe.projector(running=True)
            elif f.kind == "kill" or (f.kind == "crash" and not self._service(f).alive()):
                self.restarted(f.service, self.stage.restart(self.target, f.service).pid)
            elif f.kind == "crash":
                self._control(f, on=False)
                active.error = "did not crash: no side effect reached it during the fault"
            if f.kind in ("broker", "projector"):
                pass
            elif f.kind in ("kill", "crash"):
                self.target.down.discard(f.service)
            elif f.kind == "pause":
                self._service(f).signal(signal.SIGCONT)
            else:
                self._control(f, on=False)
        except (UserError, OSError) as exc:
            active.error = "; ".join(filter(None, (active.error, f"ending it: {exc}")))
        self.events.append({
            "service": f.service, "kind": f.kind, "planned_start_s": f.at_s,
            "planned_end_s": f.end_s, "start_s": active.start_s,
            "end_s": round(self._now_s(), 3), "error": active.error,
            "detail": "; ".join(filter(None, (f.describe(), active.detail))),
            "applied": not active.detail})

    def _service(self, f: FaultSpec) -> Any:
        service = self.target.services.get(f.service)
        if service is None:
            raise UserError(f"{self.target.name} has no service {f.service!r} "
                            f"(it has {', '.join(self.target.services)})")
        return service

    def _control(self, f: FaultSpec, *, on: bool) -> None:
        from harness.stage.control import set_faults

        path = self._service(f).control
        if not path:
            raise UserError(f"{self.target.name}'s {f.service} has no control channel")
        if not on:
            set_faults(path)
        elif f.kind == "delay":
            set_faults(path, delay_s=f.delay_s or 0.0, jitter_s=f.jitter_s)
        elif f.kind == "crash":
            set_faults(path, crash=True)
        else:
            set_faults(path, error_fraction=f.fraction or 0.0)
