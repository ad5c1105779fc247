"""What the user sees during a run: a rich live table of the targets under load (elapsed and
remaining time, achieved vs intended rate, p99, errors), plain lines when the output is not
a terminal, and a summary table at the end."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from harness.load.recorder import ACCEPTED, MergedSecond, new_histogram, percentile_ms
from targets.registry import TRANSPORTS


@dataclass
class _Row:
    label: str
    warmup_s: float
    duration_s: float
    started: float
    second: int | None = None
    achieved: int = 0
    intended: int = 0
    p99_ms: float | None = None
    errors: int = 0
    status: str = "warm-up"


class ProgressView:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self._rows: dict[str, _Row] = {}
        self._live: Live | None = None
        if self.console.is_terminal:
            self._live = Live(self._table(), console=self.console, refresh_per_second=4,
                              transient=True)
            self._live.start()

    def note(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def begin(self, label: str, warmup_s: float, duration_s: float) -> None:
        self._rows[label] = _Row(label, warmup_s, duration_s, time.monotonic())
        self.note(f"load on {label}: {warmup_s:g} s warm-up, then measuring for {duration_s:g} s")
        self._refresh()

    def second(self, label: str, second: int, achieved: int, intended: int,
               p99_ms: float | None, errors: int) -> None:
        row = self._rows.get(label)
        if row is None:
            return
        row.second, row.achieved, row.intended, row.p99_ms = second, achieved, intended, p99_ms
        row.errors += errors if second >= 0 else 0
        row.status = "warm-up" if second < 0 else "measuring"
        self._refresh()

    def end(self, label: str, status: str) -> None:
        row = self._rows.pop(label, None)
        self._refresh()
        if row is not None:
            self.note(f"{label}: {status}")

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._table())

    def _table(self) -> Table:
        t = Table(title="commbench run", expand=False)
        for col in ("target", "phase", "elapsed", "remaining", "rate/s (achieved/intended)",
                    "p99 ms", "errors"):
            t.add_column(col, justify="left" if col in ("target", "phase") else "right")
        now = time.monotonic()
        for r in self._rows.values():
            total = r.warmup_s + r.duration_s
            elapsed = now - r.started
            sat = r.intended and r.achieved < 0.99 * r.intended
            rate = f"{r.achieved}/{r.intended}" if r.second is not None else "–"
            t.add_row(r.label, r.status, f"{elapsed:.0f} s", f"{max(0.0, total - elapsed):.0f} s",
                      f"[red]{rate}[/red]" if sat else rate,
                      f"{r.p99_ms:.1f}" if r.p99_ms is not None else "–",
                      f"[red]{r.errors}[/red]" if r.errors else "0")
        return t


class ProgressListener:
    """A per-second listener: one row of the live view, fed the merged second like the
    results and window listeners."""

    def __init__(self, view: ProgressView, label: str) -> None:
        self.view, self.label = view, label

    def on_second(self, m: MergedSecond) -> None:
        ok = [h for (op, outcome, metric), h in m.hists.items()
              if outcome == "ok" and metric == "latency" and op != ACCEPTED]
        p99 = None
        if ok:
            merged = new_histogram()
            for h in ok:
                merged.add(h)
            p99 = percentile_ms(merged, 99)
        self.view.second(self.label, m.second, m.started, m.intended, p99,
                         sum(m.errors.values()))


def _probe(row: dict[str, Any]) -> bool:
    """The row's client is a probe, not a production client (targets.registry `probes`)."""
    t = TRANSPORTS.get(str(row.get("transport")))
    return t is not None and t.is_probe(str(row.get("client")))


def _rate(v: object) -> str:
    """req/s, or – when the row has none (a target run stopped before a whole second)."""
    return f"{v:.1f}" if isinstance(v, int | float) else "–"


FLAG_CELLS = {"saturated": "[red]saturated[/red]", "lagging": "[yellow]lagging[/yellow]"}


def summary_table(rows: Iterable[dict[str, Any]],
                  flags: Mapping[tuple[str, int], str] | None = None) -> Table:
    """`flags`: (target, repetition) → the saturation rule's call, shown on the `all` row."""
    flags = flags or {}
    t = Table(title="summary (latency from intended start; percentiles of successful requests)")
    cols = ("target", "rep", "operation", "count", "errors", "req/s", "p50 ms", "p99 ms",
            "p99.9 ms", "max ms", "service p99 ms", "CPU µs/req", "generator")
    for c in cols:
        t.add_column(c, justify="left" if c in ("target", "operation", "generator") else "right")

    def ms(v: object) -> str:
        return f"{v:.2f}" if isinstance(v, float) else "–"

    for r in rows:
        cpu = r.get("cpu_us_per_request")
        t.add_row(
            str(r["target"]) + (" (probe)" if _probe(r) else ""), str(r["repetition"]),
            str(r["operation"]), str(r["count"]),
            str(r["errors"]), _rate(r["throughput_rps"]), ms(r["latency_p50_ms"]),
            ms(r["latency_p99_ms"]), ms(r["latency_p999_ms"]), ms(r["latency_max_ms"]),
            ms(r["service_p99_ms"]), f"{cpu:.0f}" if isinstance(cpu, float) else "",
            FLAG_CELLS.get(flags.get((r["target"], r["repetition"]), ""), "")
            if r["operation"] == "all" else "",
            style="bold" if r["operation"] == "all" else None,
        )
    return t
