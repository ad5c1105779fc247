"""Resource probes: CPU time and resident memory of every process of a target (its process
group as started by the launcher, plus the broker's processes for the queue), sampled once a
second, so CPU per request can be charged to the transport being measured."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Any

import psutil

from harness.load.recorder import NS


class ProcessProbe:
    """Sums CPU time (user + system, children included) and RSS over a set of process trees.
    Processes are re-discovered on every sample; a process that has exited keeps the CPU time
    last seen for it, so the total never goes backwards."""

    def __init__(self, roots: Iterable[int]) -> None:
        self.roots = list(roots)
        self._cpu: dict[tuple[int, float], float] = {}  # (pid, create_time) → cpu seconds
        self.rss_max = 0

    def _procs(self) -> list[psutil.Process]:
        out: list[psutil.Process] = []
        for pid in self.roots:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                out.append(root)
                out.extend(root.children(recursive=True))
        return out

    def sample(self) -> tuple[float, int]:
        """(total CPU seconds so far, current RSS bytes)."""
        rss = 0
        for p in self._procs():
            with contextlib.suppress(psutil.Error):
                with p.oneshot():
                    t = p.cpu_times()
                    key = (p.pid, p.create_time())
                    self._cpu[key] = t.user + t.system
                    rss += p.memory_info().rss
        self.rss_max = max(self.rss_max, rss)
        return sum(self._cpu.values()), rss


class Meter:
    """Samples a target's processes once a second of its run (from the warm-up's first whole
    second to the end), and the CPU seconds of target and generator over the measured
    window, so CPU per request covers exactly the measured requests."""

    def __init__(self, target: ProcessProbe, client: ProcessProbe | None,
                 record: Callable[[int, float | None, float], None],
                 parts: dict[str, ProcessProbe] | None = None) -> None:
        self.target, self.client, self.record = target, client, record
        self.parts = parts or {}  # a topology's services (and broker), by name
        self.parts_start: dict[str, float] = {}
        self.parts_end: dict[str, float] = {}
        self.start_ns = 0
        self.window_seconds = 0
        self.next_second = 0
        self.last: tuple[int, float] | None = None  # (monotonic ns, cpu seconds)
        self.cpu_start: float | None = None
        self.cpu_end: float | None = None
        self.client_start: float | None = None
        self.client_end: float | None = None

    def begin(self, start_ns: int, warmup_s: float, window_seconds: int) -> None:
        """Take the first sample; `start_ns` is the measured window's start."""
        self.start_ns, self.window_seconds = start_ns, window_seconds
        self.next_second = -((round(warmup_s * NS) + NS - 1) // NS)
        self.last = (time.monotonic_ns(), self.target.sample()[0])
        if self.next_second == 0:  # no warm-up: this sample opens the measured window
            self.cpu_start = self.last[1]
            self.parts_start = self._parts()
            self.client_start = self.client.sample()[0] if self.client else None

    @property
    def due_ns(self) -> int:
        return self.start_ns + (self.next_second + 1) * NS

    def sample(self, final: bool = False) -> None:
        """Every sample that is due (or, `final`, one closing sample)."""
        assert self.last is not None
        now = time.monotonic_ns()
        while final or now >= self.due_ns:
            cpu, rss = self.target.sample()
            t = time.monotonic_ns()
            t_prev, cpu_prev = self.last
            pct = (cpu - cpu_prev) / ((t - t_prev) / NS) * 100 if t > t_prev else None
            self.record(self.next_second, pct, rss / 2**20)
            if self.next_second == -1:  # the sample taken as measurement starts
                self.cpu_start = cpu
                self.parts_start = self._parts()
                if self.client is not None:
                    self.client_start = self.client.sample()[0]
            elif self.next_second == self.window_seconds - 1:
                self.stop_client()  # the measured window ends
            self.last = (t, cpu)
            self.next_second += 1
            if final:
                self.cpu_end = cpu
                self.parts_end = self._parts()
                break

    def follow(self, part: str, pid: int) -> None:
        """A restarted process (a fault killed it) is probed from now on, in the total and
        in its part; the CPU its predecessor used stays counted."""
        self.target.roots.append(pid)
        if part in self.parts:
            self.parts[part].roots.append(pid)

    def _parts(self) -> dict[str, float]:
        return {name: probe.sample()[0] for name, probe in self.parts.items()}

    def services_record(self, requests: int) -> dict[str, Any]:
        """CPU µs per request of each part over the measured window (run.json `services`)."""
        return {name: round((self.parts_end[name] - start) * 1e6 / requests, 1)
                if name in self.parts_end and requests else None
                for name, start in self.parts_start.items()}

    def stop_client(self) -> None:
        """The generator's CPU stops counting (the window ended, or the run was stopped)."""
        if self.client is not None and self.client_start is not None and self.client_end is None:
            self.client_end = self.client.sample()[0]

    @property
    def cpu_s(self) -> float | None:
        if self.cpu_start is None or self.cpu_end is None:
            return None
        return self.cpu_end - self.cpu_start

    @property
    def client_cpu_s(self) -> float | None:
        if self.client_start is None or self.client_end is None:
            return None
        return self.client_end - self.client_start
