"""What the eventsourced server measures about itself, for the harness to read once a second
through the control socket (targets/control.py, query "eventsourced"): append latency (a
create's event written to the log, commit included) and projection lag (the append committed
→ the event applied to the read model), the values since the last read, plus the replay on
start (events, seconds).

Why in the server: both are moments only the server sees (the commit, the apply); a client
can only infer them. The request path appends one integer to a list. Reading hands the raw
values over (µs, packed) and empties the lists, so each answer covers exactly one interval
and the one reader (the run's probe) sees every value once; the harness builds the
histograms, so the measured server spends a few microseconds a second on being measured,
not the milliseconds a histogram per value would cost it.
"""

from __future__ import annotations

import base64
import time
from array import array
from typing import Any

MAX_US = 2**32 - 1  # about 71 minutes: longer values are clamped
MAX_HELD = 1_000_000  # values held between two reads; a reader that stops reading costs no more


class EsMetrics:
    """Records only once something will read it (`recording`: the server has a control
    socket), so a server nobody measures holds nothing."""

    def __init__(self) -> None:
        self.recording = False
        self._append_ns: list[int] = []
        self._lag_ns: list[int] = []
        self.dropped = 0  # values beyond MAX_HELD between two reads
        self.replay_events = 0
        self.replay_s = 0.0

    def appended(self, duration_ns: int) -> None:
        if self.recording:
            self._hold(self._append_ns, duration_ns)

    def projected(self, lag_ns: int) -> None:
        if self.recording:
            self._hold(self._lag_ns, lag_ns)

    def _hold(self, values: list[int], value: int) -> None:
        if len(values) < MAX_HELD:
            values.append(value)
        else:
            self.dropped += 1

    def replayed(self, events: int, started_ns: int) -> None:
        self.replay_events, self.replay_s = events, (time.monotonic_ns() - started_ns) / 1e9

    def take(self) -> dict[str, Any]:
        """The interval since the last take: counts and the values (µs, `pack`); empties it."""
        appends, lags = self._append_ns, self._lag_ns
        self._append_ns, self._lag_ns = [], []
        return {"appends": len(appends), "append_us": pack(appends),
                "projected": len(lags), "lag_us": pack(lags), "dropped": self.dropped,
                "replay": {"events": self.replay_events, "seconds": round(self.replay_s, 6)}}


def pack(values_ns: list[int]) -> str:
    """Durations in ns → µs as unsigned 32-bit integers (native order: the reader is on this
    machine), base64: 4 bytes a value."""
    us = array("I", (min(v // 1000, MAX_US) for v in values_ns))
    return base64.b64encode(us.tobytes()).decode("ascii")


def unpack(text: str) -> array[int]:
    """`pack`'s µs values."""
    out = array("I")
    out.frombytes(base64.b64decode(text))
    return out
