"""The generator process's garbage collector during a run, and what it cost.

Why (the profile in bench/README.md, issue 11): with CPython's default thresholds
(700, 10, 10) an open loop of the aiohttp client at 4,400 requests/s collected 19–210 times in
6 s, and a full collection paused the loop 41–63 ms, since it scans every object the process
imported: that pause is schedule lag for every arrival due meanwhile, and it was the whole
lag tail of otherwise calm runs. Worse, once a hiccup let requests pile up, the in-flight
requests' objects set off a collection every few dozen requests (2,000+ in 6 s, 1.5–2.4 s of
pauses) and the generator never caught up. Freezing what exists before the run takes the
imported heap out of every collection, and a gen-0 threshold of 50,000 leaves a run with few
or no collections: the clients make almost no cyclic garbage (a closed loop of 60,000
requests collected 11 times at the default threshold), so the heap grows by little, and one
collection of 50,000 live young objects takes about 3 ms here.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Any

GEN0_THRESHOLD = 50_000


def settle_heap() -> None:
    """Collect once, freeze what is left, raise the gen-0 threshold (before a run's start)."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)


@dataclass
class GcPauses:
    """Collections during a run and the time they held the loop (run.json `gc`)."""

    collections: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0

    def add(self, other: GcPauses) -> None:
        self.collections += other.collections
        self.total_ms += other.total_ms
        self.max_ms = max(self.max_ms, other.max_ms)

    def record(self) -> dict[str, float | int]:
        return {"collections": self.collections, "total_ms": round(self.total_ms, 3),
                "max_ms": round(self.max_ms, 3)}


class GcWatch:
    """Times every collection between start() and stop() (gc.callbacks) into `pauses`."""

    def __init__(self, pauses: GcPauses) -> None:
        self.pauses = pauses
        self._began = 0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter_ns()
            return
        ms = (time.perf_counter_ns() - self._began) / 1e6
        self.pauses.add(GcPauses(1, ms, ms))

    def start(self) -> None:
        gc.callbacks.append(self._callback)

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
