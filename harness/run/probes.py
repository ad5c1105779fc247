"""Resource probes: CPU time and resident memory of every process of a target (its process
group as started by the launcher, plus the broker's processes for the queue), sampled once a
second, so CPU per request can be charged to the transport being measured."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from urllib.parse import urlparse

import psutil


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


def broker_pids(amqp_url: str) -> list[int] | None:
    """The pid listening on the broker's AMQP port (beam.smp for RabbitMQ), or None when it
    cannot be found or read (then the caller records a warning instead of guessing)."""
    port = urlparse(amqp_url).port or 5672
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return None
    pids = {c.pid for c in conns
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid}
    return sorted(pids) or None
