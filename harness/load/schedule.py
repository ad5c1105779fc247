"""The open-loop arrival schedule: intended start offsets (ns from the start of warm-up),
generated lazily from a seeded RNG so a long run costs no memory and two runs of one
scenario intend the same starts.

Generator process i of N takes the arrivals i, i+N, i+2N, ... so the merged load of N
processes is exactly the schedule of one.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from harness.scenario import LoadSpec

NS = 1_000_000_000


@dataclass(frozen=True)
class Segment:
    """A stretch of constant intended rate: [start_ns, end_ns) at `rate` requests/s."""

    start_ns: int
    end_ns: int
    rate: float


def segments(load: LoadSpec, warmup_s: float) -> list[Segment]:
    """Warm-up at the first stage's rate, then the measured stages back to back."""
    out: list[Segment] = []
    t = 0
    if warmup_s > 0 and load.stages:
        t = round(warmup_s * NS)
        out.append(Segment(0, t, load.stages[0].rate))
    for stage in load.stages:
        end = t + round(stage.duration_s * NS)
        out.append(Segment(t, end, stage.rate))
        t = end
    return out


def arrivals(segs: list[Segment], arrival: str, seed: int | str) -> Iterator[int]:
    """Every intended start offset in ns, in order. Uniform: fixed gaps of 1/rate from each
    segment's start. Poisson: exponential gaps; at a segment boundary the process restarts
    at the new rate (exact, since the exponential is memoryless)."""
    rng = random.Random(f"schedule/{seed}")
    expo = rng.expovariate
    for seg in segs:
        if arrival == "uniform":
            gap = NS / seg.rate
            j = 0
            while True:
                t = seg.start_ns + round(j * gap)
                if t >= seg.end_ns:
                    break
                yield t
                j += 1
        else:
            t = float(seg.start_ns)
            rate_ns = seg.rate / NS
            while True:
                t += expo(rate_ns)
                if t >= seg.end_ns:
                    break
                yield int(t)


def process_arrivals(
    segs: list[Segment], arrival: str, seed: int | str, index: int, count: int
) -> Iterator[tuple[int, int]]:
    """(global arrival number k, offset ns) for the arrivals process `index` of `count` owns."""
    for k, t in enumerate(arrivals(segs, arrival, seed)):
        if k % count == index:
            yield k, t


class IntendedCounter:
    """Counts a process's intended arrivals per second from a private copy of its schedule,
    so per-second intended counts do not depend on how far behind dispatch runs."""

    def __init__(self, segs: list[Segment], arrival: str, seed: int | str, index: int,
                 count: int, measure_start_ns: int) -> None:
        self._it = process_arrivals(segs, arrival, seed, index, count)
        self._origin = measure_start_ns
        self._pending: int | None = None
        self._done = False

    def count_until(self, boundary_ns: int) -> int:
        """How many arrivals have an offset before `boundary_ns` and were not counted yet."""
        n = 0
        while not self._done:
            if self._pending is None:
                try:
                    self._pending = next(self._it)[1]
                except StopIteration:
                    self._done = True
                    break
            if self._pending >= boundary_ns:
                break
            n += 1
            self._pending = None
        return n

    def second_boundary(self, second: int) -> int:
        """Offset of the end of measured second `second` (negative seconds: warm-up)."""
        return self._origin + (second + 1) * NS
