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

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

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


class _Open:
    __slots__ = ("hists", "lag", "errors", "started", "clamped")

    def __init__(self) -> None:
        self.hists: dict[HistKey, HdrHistogram] = {}
        self.lag: HdrHistogram | None = None
        self.errors: Counter[tuple[str, str]] = Counter()
        self.started = 0
        self.clamped = 0


class Recorder:
    """Per-process recorder. All times are time.monotonic_ns() values (CLOCK_MONOTONIC, the
    same clock in every process on Linux)."""

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

    def _second(self, t_ns: int) -> int:
        return (t_ns - self.measure_start_ns) // NS

    def _bucket(self, second: int) -> _Open:
        b = self._open.get(second)
        if b is None:
            b = self._open[second] = _Open()
        return b

    def _hist(self, b: _Open, key: HistKey, value_ns: int) -> None:
        h = b.hists.get(key)
        if h is None:
            h = b.hists[key] = new_histogram()
        us = value_ns // 1000
        if us < LOWEST_US:
            us = LOWEST_US
        elif us > HIGHEST_US:
            us = HIGHEST_US
            b.clamped += 1
        h.record_value(us)

    def record(self, op: str, error_kind: str | None, intended_ns: int, sent_ns: int,
               done_ns: int) -> None:
        """One finished request: latency from the intended start, service from the send."""
        second = self._second(done_ns)
        if intended_ns < self.measure_start_ns and second >= 0:
            self._spill += 1
            return
        b = self._bucket(second)
        outcome = "ok" if error_kind is None else "error"
        self._hist(b, (op, outcome, "latency"), done_ns - intended_ns)
        self._hist(b, (op, outcome, "service"), done_ns - sent_ns)
        if error_kind is not None:
            b.errors[(op, error_kind)] += 1

    def started(self, sent_ns: int, lag_ns: int) -> None:
        b = self._bucket(self._second(sent_ns))
        b.started += 1
        if self._intended_in is not None:
            if b.lag is None:
                b.lag = new_histogram()
            us = min(max(lag_ns // 1000, LOWEST_US), HIGHEST_US)
            b.lag.record_value(us)

    def close_until(self, now_ns: int) -> None:
        """Close every second that ended before `now_ns` (nothing can land there any more)."""
        current = self._second(now_ns)
        while self._next_close < current:
            self._emit(self._next_close)

    def close_all(self) -> None:
        last = max(self._open, default=self._next_close - 1)
        while self._next_close <= last:
            self._emit(self._next_close)

    def _emit(self, second: int) -> None:
        b = self._open.pop(second, None) or _Open()
        self._next_close = second + 1
        intended = self._intended_in(second) if self._intended_in is not None else b.started
        self._sink(SecondRecord(
            second=second,
            hists={k: h.encode() for k, h in b.hists.items()},
            lag=b.lag.encode() if b.lag is not None else None,
            errors=dict(b.errors),
            intended=intended,
            started=b.started,
            clamped=b.clamped,
            warmup_spill=self._spill,
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
    seconds: int = 0

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
                t.seconds += 1
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
