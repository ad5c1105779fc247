"""A retry budget (as Finagle's and Envoy's): retries may be at most a fraction of the calls
made over a sliding window, so a failing downstream gets at most (1 + fraction) times its
normal load instead of max_attempts times. The window is kept in ten buckets, so it slides
in tenths of its length and costs constant memory whatever the rate."""

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
        self._buckets: deque[list[float]] = deque()  # [start, calls, retries]
        self.calls = 0
        self.retries = 0

    def _bucket(self) -> list[float]:
        now = self._now()
        while self._buckets and self._buckets[0][0] <= now - self.window_s:
            _, calls, retries = self._buckets.popleft()
            self.calls -= int(calls)
            self.retries -= int(retries)
        if not self._buckets or now - self._buckets[-1][0] >= self._width:
            self._buckets.append([now, 0, 0])
        return self._buckets[-1]

    def called(self) -> None:
        """A call was made (its first attempt)."""
        self._bucket()[1] += 1
        self.calls += 1

    def try_retry(self) -> bool:
        """Spend one retry if the window allows it."""
        bucket = self._bucket()
        if self.retries + 1 > self.fraction * self.calls:
            return False
        bucket[2] += 1
        self.retries += 1
        return True
