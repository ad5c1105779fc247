"""The measured-window arithmetic of one target run, as a per-second listener.

The window is the scenario's duration after the warm-up. Rates are divided by the time
actually measured: an interrupted or failed run ends its window when it was stopped. The
saturation rule looks only at the whole seconds before such a stop, so a stop is never
reported as a saturated generator.

Saturation rule (`saturation_reasons`): an open-loop run is flagged `saturated` when
- the generator sent fewer than 99 % of the intended requests within the measured window, or
- the schedule lag p99 (actual send − intended start) exceeds 10 ms, or
- the lag could account for a material part of the latency the run reports: lag p99 ≥ 20 %
  of the latency p99 (successful requests, accepted moments excluded, the `all` row's), and
  at least 0.5 ms; or
- it did: the latency p99 is 20 % or more above what the same requests' service time gives
  (send → answer, the lag left out): latency p99 − service p99 ≥ 20 % of the latency p99,
  and at least 0.5 ms.
Lag includes waiting for a free in-flight slot, so a stalled target that fills the bound is
flagged too.

The first two clauses mean the generator fell behind (`behind`): neither its throughput nor
its latency is the target's. The last two alone mean it kept the rate but lagged: throughput
is the offered rate as for any target, only the latency tail may hold the generator's delay.
Warnings, the terminal and the report word the two apart ("saturated" against "lagging").

Why the third clause: latency runs from the intended start, so each request's latency is its
lag plus its service time, and the generator's lag can add up to its p99 to the latency p99.
At 20 % the target's own p99 may be 0.8× the reported one (the figure up to 1.25× the
target's): a doubled p99 (lag half of it) is always flagged, well before the 10 ms clause
would (issue 11: p99 13 ms unflagged where an outside generator measured 5 ms). The 0.5 ms
floor keeps the wake-up delay every generator pays (a timer and one loop pass) from flagging
sub-millisecond figures, so the promise holds for a reported p99 of 1 ms and more; it also
makes the flag checkable per second: a window's lag p99 ≥ 0.5 ms needs some second's ≥ 0.5 ms.

Why the fourth: the third compares two tails that need not line up. Lag and service time
add request by request, and when the late sends are the slow ones (a stall that delays a
send and the answer's handling alike) the latency tail moves by more than the lag p99 says:
in `commbench run scenarios/quick.toml --load-cpus 0 --target-cpus 1` (100 requests/s,
2026-12-03 06:54 UTC) gRPC's latency p99 was 1.51× its service p99 (3.63 against 2.41 ms)
with a lag p99 of 0.68 ms, 19 % of the latency p99, unflagged. Latency minus
service time is exactly the lag, so the two p99s side by side are what the lag did to the
figure reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from harness.load.recorder import ACCEPTED, NS, MergedSecond, new_histogram, percentile_ms

SATURATION_ACHIEVED = 0.99
SATURATION_LAG_MS = 10.0
SATURATION_LAG_SHARE = 0.20  # of the latency p99
SATURATION_LAG_FLOOR_MS = 0.5
SATURATION_RULE = (f"achieved < {SATURATION_ACHIEVED:.0%} of intended, or schedule lag p99 > "
                   f"{SATURATION_LAG_MS:g} ms, or lag p99 ≥ {SATURATION_LAG_SHARE:.0%} of the "
                   f"latency p99 and ≥ {SATURATION_LAG_FLOOR_MS:g} ms, or latency p99 − service "
                   f"p99 ≥ {SATURATION_LAG_SHARE:.0%} of the latency p99 and ≥ "
                   f"{SATURATION_LAG_FLOOR_MS:g} ms")


def saturation_reasons(achieved: float, lag_p99_ms: float | None,
                       latency_p99_ms: float | None,
                       service_p99_ms: float | None = None) -> list[str]:
    """Why a generator's figures are not the target's (the rule above); [] when they are."""
    reasons = []
    if achieved < SATURATION_ACHIEVED:
        reasons.append(f"under {SATURATION_ACHIEVED:.0%} of the intended requests went out")
    lag = lag_p99_ms or 0.0
    if lag > SATURATION_LAG_MS:
        reasons.append(f"lag p99 over {SATURATION_LAG_MS:g} ms")
    elif latency_p99_ms and lag >= SATURATION_LAG_FLOOR_MS \
            and lag >= SATURATION_LAG_SHARE * latency_p99_ms:
        reasons.append(f"lag p99 is {lag / latency_p99_ms:.0%} of the latency p99 "
                       f"{latency_p99_ms:.1f} ms ({SATURATION_LAG_SHARE:.0%} or more)")
    elif latency_p99_ms and service_p99_ms is not None \
            and (moved := latency_p99_ms - service_p99_ms) >= SATURATION_LAG_FLOOR_MS \
            and moved >= SATURATION_LAG_SHARE * latency_p99_ms:
        reasons.append(f"the lag moved the latency p99 by {moved / latency_p99_ms:.0%}: "
                       f"{latency_p99_ms:.1f} ms against a service-time p99 of "
                       f"{service_p99_ms:.1f} ms ({SATURATION_LAG_SHARE:.0%} or more)")
    return reasons


def fell_behind(achieved: float, lag_p99_ms: float | None) -> bool:
    """The rule's first two clauses: the generator did not keep its schedule."""
    return achieved < SATURATION_ACHIEVED or (lag_p99_ms or 0.0) > SATURATION_LAG_MS


@dataclass
class Saturation:
    saturated: bool
    achieved: float  # started / intended over the whole seconds judged
    lag_p99_ms: float | None
    latency_p99_ms: float | None = None  # successful requests, accepted moments excluded
    reasons: tuple[str, ...] = ()
    behind: bool = False  # saturated by the first two clauses, not by the lag share alone
    service_p99_ms: float | None = None  # the same requests' service time

    @property
    def flag(self) -> str | None:
        """The call in one word: 'saturated' (fell behind), 'lagging' (kept the rate) or None."""
        return ("saturated" if self.behind else "lagging") if self.saturated else None

    def record(self) -> dict[str, Any]:
        """run.json `schedule` of a target run: the figures the rule judged, and its call."""
        return {"flag": self.flag,
                "achieved": round(self.achieved, 6), "lag_p99_ms": self.lag_p99_ms,
                "latency_p99_ms": self.latency_p99_ms, "service_p99_ms": self.service_p99_ms,
                "reasons": list(self.reasons)}


class Window:
    def __init__(self, duration_s: float, warmup_s: float) -> None:
        self.duration_s = duration_s
        self.warmup_s = warmup_s
        self.t0_ns = 0  # the generators' common start (monotonic ns); 0: never began
        self.start_ns = 0  # the measured window's start
        self.stop_ns: int | None = None  # when an interrupted or failed run was stopped
        self.intended = 0  # every second of the measured window
        self.started = 0
        self.full_intended = 0  # the whole seconds measured before any stop
        self.full_started = 0
        self.full_seconds = 0.0
        self.full_lag: Any = None  # HdrHistogram of their schedule lag
        self.full_latency: Any = None  # and of their successful requests' latency
        self.full_service: Any = None  # and service time

    def begin(self, t0_ns: int) -> None:
        self.t0_ns = t0_ns
        self.start_ns = t0_ns + round(self.warmup_s * NS)

    @property
    def began(self) -> bool:
        return self.t0_ns != 0

    @property
    def seconds(self) -> int:
        """Whole seconds the window spans (the last may be partial)."""
        return -int(-self.duration_s // 1)

    def epoch_s(self) -> float:
        """Wall-clock time of the window's start (the .hlog files' base time)."""
        return time.time() + (self.start_ns - time.monotonic_ns()) / NS

    def stop(self) -> bool:
        """The window ends now; False when it had already ended or never began."""
        if self.stop_ns is not None or not self.t0_ns:
            return False
        self.stop_ns = time.monotonic_ns()
        return True

    def on_second(self, m: MergedSecond) -> None:
        if not 0 <= m.second < self.seconds:
            return
        self.intended += m.intended
        self.started += m.started
        end_s = min(m.second + 1.0, self.duration_s)
        if self.stop_ns is None or self.start_ns + end_s * NS <= self.stop_ns:
            self.full_intended += m.intended
            self.full_started += m.started
            self.full_seconds += end_s - m.second
            if m.lag is not None:
                if self.full_lag is None:
                    self.full_lag = new_histogram()
                self.full_lag.add(m.lag)
            for (op, outcome, metric), h in m.hists.items():
                if outcome == "ok" and op != ACCEPTED and metric in ("latency", "service"):
                    attr = f"full_{metric}"
                    if getattr(self, attr) is None:
                        setattr(self, attr, new_histogram())
                    getattr(self, attr).add(h)

    @property
    def measured_s(self) -> float:
        """Seconds of the window actually measured (a stop cuts it short)."""
        if self.stop_ns is None:
            return self.duration_s
        return min(self.duration_s, max(0.0, (self.stop_ns - self.start_ns) / NS))

    def rates(self) -> tuple[int, int, float]:
        """(intended, started, seconds) to divide by: the whole window, or before a stop."""
        if self.stop_ns is None:
            return self.intended, self.started, self.duration_s
        return self.full_intended, self.full_started, self.full_seconds

    def saturation_warning(self, judged: Saturation, label: str, in_flight: int,
                           waits: int) -> str:
        """The run's warning for a flagged generator: the figures, then the clause(s)."""
        within = "" if self.stop_ns is None else \
            f" over the {self.full_seconds:g} s measured before the stop"
        return (f"generator {judged.flag} on {label}: achieved {judged.achieved:.0%} of the "
                f"intended rate{within}, schedule lag p99 {judged.lag_p99_ms or 0:.1f} ms "
                f"(in-flight limit {in_flight} per process reached {waits} times); "
                f"flagged because {'; '.join(judged.reasons)}")

    def saturation(self) -> Saturation | None:
        """The rule above, over the whole seconds before any stop; None: nothing to judge."""
        if not self.full_intended:
            return None
        lag_p99 = percentile_ms(self.full_lag, 99)
        latency_p99 = percentile_ms(self.full_latency, 99)
        service_p99 = percentile_ms(self.full_service, 99)
        achieved = self.full_started / self.full_intended
        reasons = saturation_reasons(achieved, lag_p99, latency_p99, service_p99)
        return Saturation(bool(reasons), achieved, lag_p99, latency_p99, tuple(reasons),
                          fell_behind(achieved, lag_p99), service_p99)
