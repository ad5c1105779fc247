"""A retry budget (as Finagle's): each call deposits `fraction` of a retry, each retry
withdraws a whole one, and deposits expire after the window. So retries are at most that
fraction of the calls made over the window, and over any longer span too (a withdrawn
deposit is gone, unlike a count in a sliding window, which lets retries exceed the fraction
as the window moves). A failing downstream gets at most (1 + fraction) × its calls instead
of max_attempts ×. Deposits are kept in ten buckets per window: constant memory at any rate.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

BUCKETS = 10


class RetryBudget:
    def __init__(self, fraction: float, window_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.fraction, self.window_s, self._now = fraction, window_s, clock
        self._width = window_s / BUCKETS
        self._buckets: deque[list[float]] = deque()  # [start, retries still deposited]

    def _expire(self) -> float:
        now = self._now()
        while self._buckets and self._buckets[0][0] <= now - self.window_s:
            self._buckets.popleft()
        return now

    def called(self) -> None:
        """A call was made (its first attempt): deposit its share of a retry."""
        now = self._expire()
        if not self._buckets or now - self._buckets[-1][0] >= self._width:
            self._buckets.append([now, 0.0])
        self._buckets[-1][1] += self.fraction

    def try_retry(self) -> bool:
        """Withdraw one retry, oldest deposits first (they expire first), if there is one."""
        self._expire()
        if sum(b[1] for b in self._buckets) < 1.0 - 1e-9:
            return False
        need = 1.0
        for bucket in self._buckets:
            take = min(need, bucket[1])
            bucket[1] -= take
            need -= take
            if need <= 1e-9:
                break
        return True
