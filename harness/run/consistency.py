"""The numbers of eventual consistency, per second and per target run: the eventsourced
server's append latency, projection lag and backlog, and its outbox's rows waiting for the
broker (read from its control socket once a second, harness.stage.projection) and, when the
scenario asks (`read_your_writes`), the generator's read-backs of the orders it just created,
on every target alike.

Per second they go to `projection.csv` (one row per target run and measured second); per run
to run.json (`consistency`) and `consistency.csv` (one row per target run): the merged
histograms' percentiles, the peak backlog, the read-your-writes count and rate, the replay on
start, the outbox's peak backlog, and after the load the read model checked against a fresh
replay of the log and the outbox's rows still unconfirmed.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from harness.errors import UserError
from harness.load.recorder import MergedSecond, histogram_of, new_histogram
from harness.stage.projection import ProjectionProbe
from targets.eventsourced.metrics import unpack

FILE = "projection.csv"
RUN_FILE = "consistency.csv"
RUN_COLUMNS = ("target", "repetition", "appends", "append_p50_ms", "append_p99_ms",
               "append_max_ms", "projected", "lag_p50_ms", "lag_p99_ms", "lag_p999_ms",
               "lag_max_ms", "backlog_max_events", "behind_max_ms", "replay_events",
               "replay_s", "read_backs", "stale_reads", "stale_rate", "log_check",
               "events_in_log", "applied", "duplicates_dropped", "missing", "different",
               "extra", "outbox_backlog_max", "outbox_backlog_end")
COLUMNS = ("target", "repetition", "second", "appends", "append_p50_ms", "append_p99_ms",
           "append_max_ms", "projected", "lag_p50_ms", "lag_p99_ms", "lag_max_ms",
           "backlog_events", "behind_ms", "projector", "read_backs", "stale_reads",
           "outbox_backlog")


class Consistency:
    """One target run's consistency figures (a per-second listener of the run)."""

    def __init__(self, name: str, repetition: int, seconds: int,
                 probe: ProjectionProbe | None, read_backs: bool) -> None:
        self.name, self.repetition, self.seconds = name, repetition, seconds
        self.probe, self.reading_back = probe, read_backs
        self.rows: dict[int, dict[str, Any]] = {}
        self.append, self.lag = new_histogram(), new_histogram()
        self.read_backs = self.stale_reads = 0
        self.backlog_max = 0
        self.behind_max_ms = 0.0
        self.outbox_max: int | None = None  # None: served without the outbox
        self.unanswered = 0  # seconds whose figures the server did not give
        self.dropped = 0  # values the server held no room for (over a million a second)
        self.replay: dict[str, Any] | None = None
        self.check: dict[str, Any] | None = None

    @classmethod
    def of(cls, name: str, repetition: int, seconds: int, probe: ProjectionProbe | None,
           read_backs: bool) -> Consistency | None:
        return cls(name, repetition, seconds, probe, read_backs) if probe or read_backs \
            else None

    def _row(self, second: int) -> dict[str, Any]:
        row = self.rows.get(second)
        if row is None:
            row = self.rows[second] = {"target": self.name, "repetition": self.repetition,
                                       "second": second}
        return row

    def on_second(self, m: MergedSecond) -> None:
        if self.reading_back and 0 <= m.second < self.seconds:
            self._row(m.second).update(read_backs=m.read_backs, stale_reads=m.stale_reads)
            self.read_backs += m.read_backs
            self.stale_reads += m.stale_reads

    def begin(self) -> None:
        """Empty the server's interval (the conformance gate's creates are not the run's)."""
        if self.probe is not None:
            try:
                self.replay = self.probe.figures()["replay"]
            except UserError:
                pass

    def sample(self, second: int) -> None:
        """The server's figures of the second that just ended (the probe's once a second);
        read in every second, warm-up too, so each measured second gets its own interval."""
        if self.probe is None:
            return
        measured = 0 <= second < self.seconds
        try:
            f = self.probe.figures()
        except UserError:
            if measured:
                self.unanswered += 1
                self._row(second)["projector"] = "unknown"
            return
        self.replay = f.get("replay", self.replay)
        self.dropped = int(f.get("dropped", 0))
        if not measured:
            return
        append, lag = _histogram(f["append_us"]), _histogram(f["lag_us"])
        for total, h in ((self.append, append), (self.lag, lag)):
            if h is not None:
                total.add(h)
        self.backlog_max = max(self.backlog_max, int(f["lag_events"]))
        self.behind_max_ms = max(self.behind_max_ms, float(f["behind_ms"]))
        outbox = f.get("outbox_backlog")
        if outbox is not None:
            self.outbox_max = max(self.outbox_max or 0, int(outbox))
        self._row(second).update(
            appends=f["appends"], append_p50_ms=_ms(append, 50), append_p99_ms=_ms(append, 99),
            append_max_ms=_ms(append, 100), projected=f["projected"],
            lag_p50_ms=_ms(lag, 50), lag_p99_ms=_ms(lag, 99), lag_max_ms=_ms(lag, 100),
            backlog_events=f["lag_events"], behind_ms=f["behind_ms"],
            projector="running" if f["running"] else "down", outbox_backlog=outbox)

    def finish(self) -> None:
        """After the load: the read model against the log (the backlog drained first)."""
        if self.probe is not None:
            try:
                self.check = self.probe.check()
            except UserError as exc:
                self.check = {"consistent": None, "error": str(exc)}

    def write(self, folder: Path) -> None:
        """Append this run's rows to projection.csv (created with its header when new)."""
        _append(folder / FILE, COLUMNS, [self.rows[s] for s in sorted(self.rows)])

    def write_run(self, folder: Path) -> None:
        """Append this run's row to consistency.csv: run.json's `consistency`, flat."""
        rec = self.record()
        a, lag = rec.get("append_ms") or {}, rec.get("projection_lag_ms") or {}
        replay, check = rec.get("replay_on_start") or {}, rec.get("check") or {}
        ryw = rec.get("read_your_writes") or {}
        verdict = {True: "equal", False: "different"}.get(check.get("consistent"), "") \
            if check else ""
        _append(folder / RUN_FILE, RUN_COLUMNS, [{
            "target": self.name, "repetition": self.repetition, "appends": a.get("count"),
            "append_p50_ms": a.get("p50"), "append_p99_ms": a.get("p99"),
            "append_max_ms": a.get("max"), "projected": lag.get("count"),
            "lag_p50_ms": lag.get("p50"), "lag_p99_ms": lag.get("p99"),
            "lag_p999_ms": lag.get("p999"), "lag_max_ms": lag.get("max"),
            "backlog_max_events": rec.get("backlog_max_events"),
            "behind_max_ms": rec.get("behind_max_ms"), "replay_events": replay.get("events"),
            "replay_s": replay.get("seconds"), "read_backs": ryw.get("checks"),
            "stale_reads": ryw.get("violations"), "stale_rate": ryw.get("rate"),
            "log_check": verdict or ("not checked" if self.probe else None),
            **{k: check.get(k) for k in ("events_in_log", "applied", "duplicates_dropped",
                                         "missing", "different", "extra")},
            "outbox_backlog_max": (rec.get("outbox") or {}).get("backlog_max"),
            "outbox_backlog_end": (rec.get("outbox") or {}).get("backlog_end")}])

    def record(self) -> dict[str, Any]:
        """run.json `consistency` of this target run."""
        out: dict[str, Any] = {}
        if self.probe is not None:
            out.update(append_ms=_summary(self.append), projection_lag_ms=_summary(self.lag),
                       backlog_max_events=self.backlog_max,
                       behind_max_ms=round(self.behind_max_ms, 3),
                       seconds_unanswered=self.unanswered, values_dropped=self.dropped,
                       replay_on_start=self.replay,
                       check=self.check)
            end = (self.check or {}).get("outbox") or {}
            if self.outbox_max is not None or end:
                out["outbox"] = {"backlog_max": self.outbox_max,
                                 "backlog_end": end.get("backlog"),
                                 "published": end.get("published")}
        if self.reading_back:
            out["read_your_writes"] = {
                "checks": self.read_backs, "violations": self.stale_reads,
                "rate": round(self.stale_reads / self.read_backs, 6) if self.read_backs else None}
        return out


def _append(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    """Rows appended to a CSV file, its header first when the file is new."""
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        if new:
            w.writeheader()
        for row in rows:
            w.writerow({k: "" if v is None else f"{v:.6g}" if isinstance(v, float) else v
                        for k, v in row.items()})


def _histogram(packed: str) -> HdrHistogram | None:
    """The server's µs values as a histogram (None: no value in the interval)."""
    values = unpack(packed)
    return histogram_of([v * 1000 for v in values])[0] if values else None


def _ms(h: HdrHistogram | None, p: float) -> float | None:
    if h is None or h.get_total_count() == 0:
        return None
    return (h.get_max_value() if p >= 100 else h.get_value_at_percentile(p)) / 1000.0


def _summary(h: HdrHistogram) -> dict[str, Any]:
    return {"count": h.get_total_count(), "p50": _ms(h, 50), "p99": _ms(h, 99),
            "p999": _ms(h, 99.9), "max": _ms(h, 100)}


def describe(record: dict[str, Any]) -> str:
    """One line of a target run's consistency record (run.json), for the terminal."""
    parts = []
    if (a := record.get("append_ms")) and a["count"]:
        parts.append(f"append p50 {a['p50']:g} ms, p99 {a['p99']:g} ms")
    if (lag := record.get("projection_lag_ms")) and lag["count"]:
        parts.append(f"projection lag p50 {lag['p50']:g} ms, p99 {lag['p99']:g} ms, "
                     f"max {lag['max']:g} ms; backlog peak {record['backlog_max_events']} events")
    if r := record.get("read_your_writes"):
        rate = "" if r["rate"] is None else f" ({r['rate']:.2%})"
        parts.append(f"read-your-writes violations {r['violations']} of {r['checks']}{rate}")
    if (o := record.get("outbox")) and o["backlog_max"] is not None:
        end = "" if o["backlog_end"] is None else f", {o['backlog_end']} at the end"
        parts.append(f"outbox backlog peak {o['backlog_max']} events{end}")
    if replay := record.get("replay_on_start"):
        parts.append(f"replay on start {replay['events']:,} events in {replay['seconds']:g} s")
    if check := record.get("check"):
        parts.append("read model = its log" if check.get("consistent") else
                     "read model NOT its log" if check.get("consistent") is False else
                     "read model not checked")
    return "; ".join(parts)
