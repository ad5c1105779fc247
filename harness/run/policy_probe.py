"""Reads a chain target's resilience-policy counters once a second, from every service's
control socket (targets/control.py), outside the measured path: per-second columns of
timeline.csv, each breaker state change in policy_events.csv, and the run's totals and
retry amplification for run.json.

Counters are cumulative in each process; a process a fault restarted starts again from 0,
so a counter that went down is taken as a restart and its new value as the increase. A
service that does not answer (killed, paused) keeps its last values until it does again.
Breaker times are the edge's CLOCK_MONOTONIC, the clock of the measured window too (one
host), so they are placed on the window without conversion.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import psutil

from harness.errors import UserError
from harness.load.recorder import NS
from harness.stage.control import query_policies
from harness.stage.stage import EDGE, StagedTarget
from targets.policy.events import COUNTERS
from targets.registry import get_transport

POLL_TIMEOUT_S = 0.1  # a local socket answers in well under that; a missed poll is caught up
EVENT_COLUMNS = ("target", "repetition", "service", "state", "at_s")
EVENTS_FILE = "policy_events.csv"


class PolicyProbe:
    def __init__(self, target: StagedTarget, name: str, repetition: int, folder: Path) -> None:
        self.target, self.name, self.repetition = target, name, repetition
        self.path = folder / EVENTS_FILE
        self._last: dict[str, dict[str, int]] = {}  # service → its counters as last read
        self._next_event = 0  # the edge's next breaker state change to read
        self._edge_pid = 0  # a restarted edge numbers its state changes from 0 again
        self.window: dict[str, int] = dict.fromkeys(COUNTERS, 0)  # measured seconds' sums
        self.unanswered = 0
        self._read()  # the baseline: what the gate's checks caused is not counted
        if not self.path.exists():
            with open(self.path, "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerow(EVENT_COLUMNS)

    @classmethod
    def of(cls, target: StagedTarget, policies: str, name: str, repetition: int,
           folder: Path) -> PolicyProbe | None:
        """A probe when the target's services apply policies and its edge has a control
        socket."""
        edge = target.services.get(EDGE)
        if not policies or edge is None or not edge.control \
                or not get_transport(target.ref.transport).policy_parts:
            return None
        return cls(target, name, repetition, folder)

    def sample(self, second: int, start_ns: int, measured: bool) -> dict[str, int]:
        """Each counter's increase since the last sample, as timeline columns; breaker state
        changes since then appended to policy_events.csv (times from `start_ns`)."""
        delta, transitions = self._read()
        if measured:
            for k, v in delta.items():
                self.window[k] += v
        if transitions:
            with open(self.path, "a", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                for t in transitions:
                    w.writerow((self.name, self.repetition, t["service"], t["state"],
                                f"{(t['t_ns'] - start_ns) / NS:.3f}"))
        return {f"policy_{k}": v for k, v in delta.items()}

    def _read(self) -> tuple[dict[str, int], list[dict[str, Any]]]:
        delta = dict.fromkeys(COUNTERS, 0)
        transitions: list[dict[str, Any]] = []
        for role, service in self.target.services.items():
            if not service.control or role in self.target.down or _stopped(service.pid):
                continue
            start = self._next_event if role == EDGE and service.pid == self._edge_pid else 0
            try:
                answer = query_policies(service.control, start, timeout=POLL_TIMEOUT_S)
            except UserError:
                self.unanswered += 1
                continue
            last = self._last.get(role, {})
            for k in COUNTERS:
                now = int(answer["counters"].get(k, 0))
                before = last.get(k, 0)
                delta[k] += now - before if now >= before else now
            self._last[role] = {k: int(answer["counters"].get(k, 0)) for k in COUNTERS}
            if role == EDGE:
                self._edge_pid = service.pid
                transitions = answer["transitions"]
                self._next_event = transitions[-1]["seq"] + 1 if transitions else start
        return delta, transitions

    def record(self, name: str, creates: int | None) -> dict[str, Any]:
        """run.json `policies`: the measured window's counts, retry amplification
        (downstream attempts per call the sagas made) and attempts per create at the edge."""
        calls, attempts = self.window["calls"], self.window["attempts"]
        return {"name": name, "applied": True, "counts": dict(self.window),
                "amplification": round(attempts / calls, 3) if calls else None,
                "attempts_per_create": round(attempts / creates, 3) if creates and calls else None,
                "unanswered_polls": self.unanswered}


def _stopped(pid: int) -> bool:
    """A paused service (SIGSTOP) cannot answer: not asked, rather than waited for."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_STOPPED
    except psutil.Error:
        return True
