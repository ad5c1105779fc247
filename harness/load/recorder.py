"""Recording: HdrHistograms per (operation, outcome, metric, second), in microseconds.

A generator process keeps only the seconds still open; each closed second is encoded into a
small picklable SecondRecord and handed to a sink (the parent process, a test), so memory stays
flat however long the run. `Merger` adds the records of N processes back together exactly
(HdrHistogram add of the decoded histograms) and keeps whole-run totals.

Bucketing: a result belongs to the second in which it completed (the usual interval-log
convention). Whether it is warm-up or measured depends on its *intended* start (closed loop:
its send): warm-up results completing after the measured window opened are dropped
(counted as `warmup_spill`), so warm-up never leaks into measured figures.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

# numpy's OpenBLAS starts a thread per core that busy-waits beside the event loop; the
# recorder needs none of it (set before numpy is first imported in a generator process).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from hdrh.histogram import HdrHistogram

NS = 1_000_000_000
LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: anything longer is clamped and counted
SIGNIFICANT_DIGITS = 3
METRICS = ("latency", "service")
ACCEPTED = "create_accepted"

HistKey = tuple[str, str, str]  # (operation, outcome "ok"|"error", metric)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


@dataclass
class SecondRecord:
    """One closed second of one generator process (picklable: histograms are encoded)."""

    second: int  # from the start of measurement; warm-up seconds are negative
    hists: dict[HistKey, bytes] = field(default_factory=dict)
    lag: bytes | None = None  # schedule lag (µs) of the requests sent in this second
    errors: dict[tuple[str, str], int] = field(default_factory=dict)  # (op, kind) → count
    intended: int = 0  # arrivals whose intended start falls in this second
    started: int = 0  # requests actually sent in this second
    clamped: int = 0  # values above HIGHEST_US, recorded as HIGHEST_US
    warmup_spill: int = 0
    read_backs: int = 0  # read-your-writes checks answered (scenario read_your_writes)
    stale_reads: int = 0  # of those, lookups that did not see the order just created


class _Open:
    """One open second: raw durations in ns, turned into histograms when it closes."""

    __slots__ = ("vals", "lag", "errors", "started", "read_backs", "stale_reads")

    def __init__(self) -> None:
        self.vals: dict[tuple[str, str], tuple[list[int], list[int]]] = {}  # latency, service
        self.lag: list[int] | None = None
        self.errors: Counter[tuple[str, str]] = Counter()
        self.started = 0
        self.read_backs = 0
        self.stale_reads = 0


def histogram_of(values_ns: list[int], into: HdrHistogram | None = None
                 ) -> tuple[HdrHistogram, int]:
    """A histogram (µs) of `values_ns` and how many were above HIGHEST_US (clamped; values
    below LOWEST_US count as LOWEST_US). Vectorised: the same counts as record_value per value,
    at a fraction of the cost, so the per-request hot path is one list append. `into`: an
    empty histogram to fill instead of a new one."""
    h = into if into is not None else new_histogram()
    a = np.asarray(values_ns, dtype=np.int64) // 1000
    clamped = int(np.count_nonzero(a > HIGHEST_US))
    np.clip(a, LOWEST_US, HIGHEST_US, out=a)
    # HdrHistogram's counts index (see HdrHistogram._counts_index_for), on whole arrays:
    # bit_length comes from frexp, exact for values below 2**53.
    pow2ceiling = np.frexp((a | h.sub_bucket_mask).astype(np.float64))[1].astype(np.int64)
    bucket = pow2ceiling - h.unit_magnitude - (h.sub_bucket_half_count_magnitude + 1)
    sub_bucket = a >> (bucket + h.unit_magnitude)
    index = ((bucket + 1) << h.sub_bucket_half_count_magnitude) + sub_bucket \
        - h.sub_bucket_half_count
    counts = np.ctypeslib.as_array(h.counts)
    counts += np.bincount(index, minlength=h.counts_len)[:h.counts_len].astype(counts.dtype)
    if len(a):
        h.total_count = len(a)
        h.min_value = int(a.min())
        h.max_value = int(a.max())
    return h, clamped


class _Scratch:
    """One histogram filled, encoded and emptied again for every histogram a second's close
    builds. A new HdrHistogram allocates and zeroes ~190 KB of counters and its encoder's
    buffers (about 130 µs here, a quarter of a build) and `reset()` walks the counters in
    Python; emptying with numpy costs a few µs."""

    def __init__(self) -> None:
        self._h = new_histogram()
        self._counts = np.ctypeslib.as_array(self._h.counts)

    def encoded(self, values_ns: list[int]) -> tuple[bytes, int]:
        h, clamped = histogram_of(values_ns, into=self._h)
        try:
            return h.encode(), clamped
        finally:
            self._counts[:] = 0
            h.total_count, h.min_value, h.max_value = 0, sys.maxsize, 0


class Recorder:
    """Per-process recorder. All times are time.monotonic_ns() values (CLOCK_MONOTONIC, the
    same clock in every process on Linux).

    The hot path (`started`, `record`) only appends integers to the current second's lists;
    histograms are built when a second closes (`histogram_of`)."""

    def __init__(
        self,
        measure_start_ns: int,
        first_second: int,
        sink: Callable[[SecondRecord], None],
        intended_in: Callable[[int], int] | None = None,
    ) -> None:
        self.measure_start_ns = measure_start_ns
        self._sink = sink
        self._intended_in = intended_in  # second → intended arrivals (None: closed loop)
        self._open: dict[int, _Open] = {}
        self._next_close = first_second
        self._spill = 0
        # The bucket of the second most recently used, and its [lo, hi) in ns.
        self._cur: _Open | None = None
        self._cur_second = 0
        self._cur_lo = self._cur_hi = 0
        self._scratch = _Scratch()

    def _second(self, t_ns: int) -> int:
        return (t_ns - self.measure_start_ns) // NS

    def _bucket(self, second: int) -> _Open:
        b = self._open.get(second)
        if b is None:
            b = self._open[second] = _Open()
        self._cur, self._cur_second = b, second
        self._cur_lo = self.measure_start_ns + second * NS
        self._cur_hi = self._cur_lo + NS
        return b

    def record(self, op: str, error_kind: str | None, intended_ns: int, sent_ns: int,
               done_ns: int) -> None:
        """One finished request: latency from the intended start, service from the send."""
        if self._cur_lo <= done_ns < self._cur_hi:
            b, second = self._cur, self._cur_second
        else:
            second = self._second(done_ns)
            b = self._bucket(second)
        if intended_ns < self.measure_start_ns and second >= 0:
            self._spill += 1
            return
        key = (op, "ok" if error_kind is None else "error")
        lists = b.vals.get(key)  # type: ignore[union-attr]
        if lists is None:
            lists = b.vals[key] = ([], [])  # type: ignore[union-attr]
        lists[0].append(done_ns - intended_ns)
        lists[1].append(done_ns - sent_ns)
        if error_kind is not None:
            b.errors[(op, error_kind)] += 1  # type: ignore[union-attr]

    def read_back(self, intended_ns: int, done_ns: int, seen: bool) -> None:
        """A lookup right after a create's answer ended: it saw the order (or not). Bucketed
        as a request is: by completion, a warm-up create's check never counts as measured."""
        second = self._second(done_ns)
        if intended_ns < self.measure_start_ns and second >= 0:
            return
        b = self._open.get(second) or self._bucket(second)
        b.read_backs += 1
        b.stale_reads += not seen

    def started(self, sent_ns: int, lag_ns: int) -> None:
        if self._cur_lo <= sent_ns < self._cur_hi:
            b = self._cur
        else:
            b = self._bucket(self._second(sent_ns))
        b.started += 1  # type: ignore[union-attr]
        if self._intended_in is not None:
            if b.lag is None:  # type: ignore[union-attr]
                b.lag = []  # type: ignore[union-attr]
            b.lag.append(lag_ns)  # type: ignore[union-attr]

    def closing(self, now_ns: int) -> Iterator[None]:
        """Close every second that ended before `now_ns`, in steps: it yields after each
        histogram it builds (about 1 ms each at 5,000 requests/s here), so a caller on the
        event loop lets due arrivals go out between them; in one go a second's close held the
        loop 2.4–5.4 ms, schedule lag for every arrival due meanwhile (bench/README.md)."""
        current = self._second(now_ns)
        while self._next_close < current:
            yield from self._emit(self._next_close)

    def close_until(self, now_ns: int) -> None:
        """Close every second that ended before `now_ns` (nothing can land there any more)."""
        for _ in self.closing(now_ns):
            pass

    def close_all(self) -> None:
        last = max(self._open, default=self._next_close - 1)
        while self._next_close <= last:
            for _ in self._emit(self._next_close):
                pass

    def _emit(self, second: int) -> Iterator[None]:
        """Build the second's histograms one per step; hand the record over at the end. The
        second is over, so nothing lands in its bucket meanwhile; it leaves `_open` only
        when its record is handed over (a close stopped midway is done again by close_all)."""
        b = self._open.get(second) or _Open()
        hists: dict[HistKey, bytes] = {}
        clamped = 0
        for (op, outcome), (lat, svc) in list(b.vals.items()):
            for metric, vals in (("latency", lat), ("service", svc)):
                hists[(op, outcome, metric)], c = self._scratch.encoded(vals)
                clamped += c
                yield
        lag = self._scratch.encoded(b.lag)[0] if b.lag is not None else None
        if second < self._next_close:  # handed over meanwhile (close_all): never twice
            return
        self._open.pop(second, None)
        if b is self._cur:
            self._cur, self._cur_lo, self._cur_hi = None, 0, 0
        self._next_close = second + 1
        intended = self._intended_in(second) if self._intended_in is not None else b.started
        self._sink(SecondRecord(
            second=second,
            hists=hists,
            lag=lag,
            errors=dict(b.errors),
            intended=intended,
            started=b.started,
            clamped=clamped,
            warmup_spill=self._spill,
            read_backs=b.read_backs,
            stale_reads=b.stale_reads,
        ))
        self._spill = 0


@dataclass
class MergedSecond:
    second: int
    hists: dict[HistKey, HdrHistogram]
    lag: HdrHistogram | None
    errors: Counter[tuple[str, str]]
    intended: int
    started: int
    read_backs: int = 0
    stale_reads: int = 0


class SecondListener(Protocol):
    """What the run hands each merged second to (results, window, progress, cascade)."""

    def on_second(self, m: MergedSecond) -> None: ...


@dataclass
class Totals:
    """Whole measured window (seconds ≥ 0) of one target run, all processes merged."""

    hists: dict[HistKey, HdrHistogram] = field(default_factory=dict)
    lag: HdrHistogram = field(default_factory=new_histogram)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    intended: int = 0
    started: int = 0
    clamped: int = 0
    warmup_spill: int = 0

    def histogram(self, ops: Iterable[str], outcome: str, metric: str) -> HdrHistogram:
        """The merge of several operations' histograms (a fresh histogram)."""
        out = new_histogram()
        for op in ops:
            h = self.hists.get((op, outcome, metric))
            if h is not None:
                out.add(h)
        return out


class Merger:
    """Merges the SecondRecords of `processes` generator processes exactly. A second is
    handed to `on_second` once every process still running has closed it."""

    def __init__(self, processes: int, on_second: Callable[[MergedSecond], None]) -> None:
        self._on_second = on_second
        self._pending: dict[int, MergedSecond] = {}
        self._closed_upto: dict[int, int | None] = {p: None for p in range(processes)}
        self._finished: set[int] = set()
        self.totals = Totals()

    def add(self, process: int, rec: SecondRecord) -> None:
        m = self._pending.get(rec.second)
        if m is None:
            m = self._pending[rec.second] = MergedSecond(rec.second, {}, None, Counter(), 0, 0)
        for key, enc in rec.hists.items():
            h = HdrHistogram.decode(enc)
            if key in m.hists:
                m.hists[key].add(h)
            else:
                m.hists[key] = h
        if rec.lag is not None:
            lag = HdrHistogram.decode(rec.lag)
            if m.lag is None:
                m.lag = lag
            else:
                m.lag.add(lag)
        m.errors.update(rec.errors)
        m.intended += rec.intended
        m.started += rec.started
        m.read_backs += rec.read_backs
        m.stale_reads += rec.stale_reads
        self.totals.clamped += rec.clamped
        self.totals.warmup_spill += rec.warmup_spill
        self._closed_upto[process] = rec.second
        self._flush(final=False)

    def finish(self, process: int) -> None:
        """The process will send nothing more (it ended or failed)."""
        self._finished.add(process)
        self._flush(final=False)

    def flush_all(self) -> None:
        self._flush(final=True)

    def _flush(self, *, final: bool) -> None:
        if not self._pending:
            return
        running = [upto for p, upto in self._closed_upto.items() if p not in self._finished]
        if final or not running:
            limit = max(self._pending)
        elif any(upto is None for upto in running):
            return
        else:
            limit = min(upto for upto in running if upto is not None)
        for second in sorted(s for s in self._pending if s <= limit):
            m = self._pending.pop(second)
            if second >= 0:
                t = self.totals
                for key, h in m.hists.items():
                    if key in t.hists:
                        t.hists[key].add(h)
                    else:
                        t.hists[key] = new_histogram()
                        t.hists[key].add(h)
                if m.lag is not None:
                    t.lag.add(m.lag)
                t.errors.update(m.errors)
                t.intended += m.intended
                t.started += m.started
            self._on_second(m)


def percentile_ms(h: HdrHistogram | None, p: float) -> float | None:
    if h is None or h.get_total_count() == 0:
        return None
    return h.get_value_at_percentile(p) / 1000.0


def max_ms(h: HdrHistogram | None) -> float | None:
    if h is None or h.get_total_count() == 0:
        return None
    return h.get_max_value() / 1000.0
