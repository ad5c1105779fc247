"""What a fault does to the requests at the edge, per second and per run.

A per-second listener like the others: it keeps, for each measured second, the requests
that succeeded (goodput), those that failed and the p99 latency of the successes (latency
from the intended start, all operations but the queue's accept). From that series, once the
run is over, the cascade numbers:

- baseline: p99 and error rate over the seconds before the first fault;
- time to detect: from a fault's start to the first second whose error rate exceeds 1 % or
  whose p99 exceeds twice the baseline (None: the edge never showed it);
- time to recover: from the fault's end to the start of the first 10 whole seconds after it
  that, taken together, have under 1 % errors and a p99 under 1.5× the baseline, every one
  of them with traffic (None: not within the window). Together, not each: at a few dozen
  requests a second, one second's p99 is its slowest request, and one slow request on a
  busy machine would otherwise hold recovery off for ten more seconds;
- during: goodput, error rate and p99 over the fault's seconds;
- goodput back: from the fault's end to the start of the first GOODPUT_SECONDS whole seconds
  whose goodput reaches GOODPUT_SHARE of the goodput before the first fault (None: it stayed
  collapsed for as long as the window lasted: a metastable state, or a window too short).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness.load.recorder import ACCEPTED, MergedSecond, new_histogram, percentile_ms

DETECT_ERROR_RATE = 0.01
DETECT_P99_FACTOR = 2.0
RECOVER_ERROR_RATE = 0.01
RECOVER_P99_FACTOR = 1.5
RECOVER_SECONDS = 10
GOODPUT_SHARE = 0.9
GOODPUT_SECONDS = 3
CASCADE_COLUMNS = ("target", "repetition", "fault", "start_s", "end_s", "baseline_p99_ms",
                   "baseline_error_rate", "time_to_detect_s", "time_to_recover_s",
                   "goodput_during_rps", "error_rate_during", "p99_during_ms",
                   "goodput_before_rps", "goodput_back_s")


@dataclass
class Second:
    ok: int
    errors: int
    hist: Any  # HdrHistogram of the successes' latency

    @property
    def error_rate(self) -> float:
        total = self.ok + self.errors
        return self.errors / total if total else 0.0


class Cascade:
    def __init__(self, window_seconds: int) -> None:
        self.window_seconds = window_seconds
        self.seconds: dict[int, Second] = {}

    def on_second(self, m: MergedSecond) -> None:
        if not 0 <= m.second < self.window_seconds:
            return
        hist, ok, errors = new_histogram(), 0, 0
        for (op, outcome, metric), h in m.hists.items():
            if op == ACCEPTED or metric != "latency":
                continue
            if outcome == "ok":
                hist.add(h)
                ok += h.get_total_count()
            else:
                errors += h.get_total_count()
        self.seconds[m.second] = Second(ok, errors, hist)

    def _merged(self, lo: float, hi: float) -> Second:
        out = Second(0, 0, new_histogram())
        for s, sec in self.seconds.items():
            if lo <= s < hi:
                out.ok += sec.ok
                out.errors += sec.errors
                out.hist.add(sec.hist)
        return out

    def numbers(self, windows: list[tuple[float, float, str]]) -> list[dict[str, Any]]:
        """One row per fault (start_s, end_s, description) of this target run."""
        if not windows:
            return []
        first = min(w[0] for w in windows)
        before = self._merged(0, int(first))
        base_p99 = percentile_ms(before.hist, 99)
        rows = []
        for start, end, what in windows:
            during = self._merged(int(start), end)
            # the seconds merged: int(start) … the one `end` falls in (a fault ends mid-second:
            # a broker's start or a service's restart takes a while)
            seconds = max(1, math.ceil(end) - int(start))
            rows.append({
                "fault": what, "start_s": start, "end_s": end,
                "baseline_p99_ms": base_p99, "baseline_error_rate": before.error_rate,
                "time_to_detect_s": self._detect(start, end, base_p99),
                "time_to_recover_s": self._recover(end, base_p99),
                "goodput_during_rps": during.ok / seconds, "error_rate_during": during.error_rate,
                "p99_during_ms": percentile_ms(during.hist, 99),
                "goodput_before_rps": before.ok / int(first) if int(first) else None,
                "goodput_back_s": self._goodput_back(end, before.ok / int(first))
                if int(first) and before.ok else None})
        return rows

    def _goodput_back(self, end: float, before_rps: float) -> float | None:
        for s in range(math.ceil(end - 1e-9), self.window_seconds - GOODPUT_SECONDS + 1):
            span = self._merged(s, s + GOODPUT_SECONDS)
            if span.ok >= GOODPUT_SHARE * before_rps * GOODPUT_SECONDS:
                return round(s - end, 3)
        return None

    def _bad(self, sec: Second, base_p99: float | None, factor: float, rate: float) -> bool:
        p99 = percentile_ms(sec.hist, 99)
        slow = base_p99 is not None and p99 is not None and p99 > factor * base_p99
        return sec.error_rate > rate or slow or (sec.ok == 0 and sec.errors == 0)

    def _detect(self, start: float, end: float, base_p99: float | None) -> float | None:
        for s in range(int(start), self.window_seconds):
            sec = self.seconds.get(s)
            if sec is not None and self._bad(sec, base_p99, DETECT_P99_FACTOR, DETECT_ERROR_RATE):
                return round(max(0.0, s - start), 3)
        return None

    def _recover(self, end: float, base_p99: float | None) -> float | None:
        for s in range(math.ceil(end - 1e-9), self.window_seconds - RECOVER_SECONDS + 1):
            span = [self.seconds.get(x) for x in range(s, s + RECOVER_SECONDS)]
            if any(sec is None or sec.ok + sec.errors == 0 for sec in span):
                continue
            if not self._bad(self._merged(s, s + RECOVER_SECONDS), base_p99,
                             RECOVER_P99_FACTOR, RECOVER_ERROR_RATE):
                return round(s - end, 3)
        return None
