"""Applies a target run's faults on their timeline, outside the measured path: signals to a
named service's process group (kill, pause), its control socket (delay, errors, crash; the
eventsourced projector's crash and restart), or the private broker's control tool (broker).

The runner calls `tick()` from its collection loop, which wakes for `due_ns` as it wakes for
probes, so a fault starts within a few milliseconds of its planned time; what actually
happened (start, end, detail, any error) is recorded, and `finish()` ends every fault still
on (a paused service is resumed, a killed one restarted) on every exit path.

Whatever waits runs in order on a thread of its own, never on the collection loop: stopping
or starting a broker (`rabbitmqctl stop_app` / `start_app`) takes a second or more, a killed
service's new process half a second to be ready, and the loop must go on sampling each
second's CPU, queue depths and server figures meanwhile (it did not, once: a broker fault
shifted a second's figures into the next). The record is handed back and applied by
`tick()` and `finish()` on the loop's thread. A killed service's new process is *spawned*
on the loop's thread, though: a child's parent-death signal follows the thread that started
it (harness.lifecycle.child_setup), so a service started by a thread that ends would be
killed with it.
"""

from __future__ import annotations

import queue
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from harness.errors import UserError
from harness.load.recorder import NS
from harness.scenario import FaultSpec
from harness.stage.launcher import Starting
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
    starting: Starting | None = None  # a killed service's new process, not yet ready
    respawn_error: Exception | None = None


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
        self._active: dict[int, _Active] = {}  # the loop's thread only
        self.events: list[dict[str, Any]] = []
        self._worker: ThreadPoolExecutor | None = None  # the actions that wait, in order
        self._back: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()  # to the loop

    @property
    def due_ns(self) -> int | None:
        return self.t0 + round(self._plan[0][0] * NS) if self._plan else None

    def _now_s(self) -> float:
        return (time.monotonic_ns() - self.t0) / NS

    def tick(self) -> None:
        while self._plan and self.due_ns is not None and time.monotonic_ns() >= self.due_ns:
            _, _, n, edge = self._plan.pop(0)
            if edge == "start":
                active = self._active[n] = _Active(self._faults[n], round(self._now_s(), 3))
                self._do(self._start, active)
            elif (active := self._active.pop(n, None)) is not None:
                self._do(self._end, active)
        self._apply()

    def finish(self) -> None:
        """End every fault still on (an interrupted or failed run), forget the rest, and wait
        for every action to be done."""
        self._plan.clear()
        for n in list(self._active):
            self._do(self._end, self._active.pop(n))
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None
        self._apply()

    def _do(self, action: Callable[[_Active], None], active: _Active) -> None:
        """The actions that wait (the broker's, a restart) on their thread, in order; every
        other one here and now. A restart's process is spawned here (see the module's doc)."""
        f = active.fault
        if action == self._end and f.kind in ("kill", "crash"):
            try:
                if f.kind == "kill" or not self._service(f).alive():
                    active.starting = self.stage.respawn(self.target, f.service)
            except Exception as exc:  # recorded by _end, on the thread
                active.respawn_error = exc
        if f.kind != "broker" and active.starting is None and active.respawn_error is None:
            action(active)
            return
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="broker-fault")
        self._worker.submit(action, active)

    def _apply(self) -> None:
        """What the actions handed back, applied on the loop's thread."""
        while True:
            try:
                self._back.get_nowait()()
            except queue.Empty:
                return

    def _start(self, active: _Active) -> None:
        f = active.fault
        active.start_s = round(self._now_s(), 3)  # when it began (after any broker action)
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
        except Exception as exc:  # on the actions' thread: recorded with the fault, never lost
            active.error = str(exc) if isinstance(exc, UserError | OSError) else \
                f"{type(exc).__name__}: {exc}"

    def _end(self, active: _Active) -> None:
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
            elif active.respawn_error is not None:
                raise active.respawn_error
            elif active.starting is not None:
                pid = self.stage.restarted(self.target, f.service, active.starting).pid
                self._back.put(lambda: self.restarted(f.service, pid))
            elif f.kind == "crash":
                self._control(f, on=False)
                active.error = "did not crash: no side effect reached it during the fault"
            if f.kind in ("broker", "projector"):
                pass
            elif f.kind in ("kill", "crash"):  # on the loop's thread: its probes read `down`
                self._back.put(lambda: self.target.down.discard(f.service))
            elif f.kind == "pause":
                self._service(f).signal(signal.SIGCONT)
            else:
                self._control(f, on=False)
        except Exception as exc:  # as in _start
            active.error = "; ".join(filter(None, (active.error, f"ending it: {exc}")))
        event = {
            "service": f.service, "kind": f.kind, "planned_start_s": f.at_s,
            "planned_end_s": f.end_s, "start_s": active.start_s,
            "end_s": round(self._now_s(), 3), "error": active.error,
            "detail": "; ".join(filter(None, (f.describe(), active.detail))),
            "applied": not active.detail}
        self._back.put(lambda: self.events.append(event))

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
