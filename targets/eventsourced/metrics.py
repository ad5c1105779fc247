"""What the eventsourced server measures about itself, for the harness to read once a second
through the control socket (targets/control.py, query "eventsourced"): append latency (a
create's event written to the log, commit included) and projection lag (the append committed
→ the event applied to the read model), each an HdrHistogram in µs of the values since the
last read, plus the replay on start (events, seconds).

Why in the server: both are moments only the server sees (the commit, the apply); a client
can only infer them. The hot path appends one integer to a list; the histograms are built
when the harness reads them (outside the request path), and reading empties the lists, so
each answer covers exactly one interval and one reader (the run's probe) sees every value once.
"""

from __future__ import annotations

import time
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour, as the load recorder's histograms
SIGNIFICANT_DIGITS = 3


class EsMetrics:
    def __init__(self) -> None:
        self._append_ns: list[int] = []
        self._lag_ns: list[int] = []
        self.appends = 0  # creates appended since the server started
        self.projected_events = 0  # events applied by the live projector (catch-ups included)
        self.replay_events = 0
        self.replay_s = 0.0

    def appended(self, duration_ns: int) -> None:
        self._append_ns.append(duration_ns)

    def projected(self, lag_ns: int) -> None:
        self._lag_ns.append(lag_ns)

    def replayed(self, events: int, started_ns: int) -> None:
        self.replay_events, self.replay_s = events, (time.monotonic_ns() - started_ns) / 1e9

    def take(self) -> dict[str, Any]:
        """The interval since the last take: counts and encoded histograms (µs); empties it."""
        appends, lags = self._append_ns, self._lag_ns
        self._append_ns, self._lag_ns = [], []
        self.appends += len(appends)
        self.projected_events += len(lags)
        return {"appends": len(appends), "append_hist": encode(appends),
                "projected": len(lags), "lag_hist": encode(lags),
                "replay": {"events": self.replay_events, "seconds": round(self.replay_s, 6)}}


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def encode(values_ns: list[int]) -> str:
    """An HdrHistogram (µs, values clamped to its range) in its standard compressed base64."""
    h = new_histogram()
    for v in values_ns:
        h.record_value(min(max(v // 1000, LOWEST_US), HIGHEST_US))
    return h.encode().decode("ascii") if values_ns else ""


def decode(text: str) -> HdrHistogram | None:
    return HdrHistogram.decode(text.encode("ascii")) if text else None

