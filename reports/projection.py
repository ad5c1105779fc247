"""Eventual consistency in the report: the eventsourced target's append latency, projection
lag, backlog, replay on start, read model checked against its log and outbox backlog (run.json
`consistency`), the read-your-writes violations of every target whose scenario counted them,
and the projection lag per second (projection.csv) drawn over the fault windows, so a
projector crash shows as lag that grows while it is down and drains once it is back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from reports.loader import Run
from reports.plots import Span, _figure, _legend_below, _log_ms, _shade, _window_end

COLUMNS = ["append p50 ms", "append p99 ms", "projection lag p50 ms", "projection lag p99 ms",
           "projection lag max ms", "peak backlog events", "peak behind ms",
           "read-your-writes checks", "violations", "violation rate", "replay on start",
           "read model vs log", "outbox peak / left"]
FLOOR_MS = 0.01  # a log axis cannot show 0: a second with nothing behind draws here


@dataclass
class ConsistencyTable:
    columns: list[str]
    rows: list[tuple[str, list[str]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def consistency_table(run: Run) -> ConsistencyTable | None:
    """One row per target run with consistency figures; None when no target has any."""
    out = ConsistencyTable(COLUMNS)
    for t in run.context.get("targets", []):
        c: dict[str, Any] = t.get("consistency") or {}
        if not c:
            continue
        label = f"{t['name']} r{t.get('repetition', 1)}"
        append, lag = c.get("append_ms") or {}, c.get("projection_lag_ms") or {}
        ryw = c.get("read_your_writes") or {}
        replay, check = c.get("replay_on_start") or {}, c.get("check") or {}
        out.rows.append((label, [
            _num(append.get("p50")), _num(append.get("p99")), _num(lag.get("p50")),
            _num(lag.get("p99")), _num(lag.get("max")), _num(c.get("backlog_max_events")),
            _num(c.get("behind_max_ms")), _num(ryw.get("checks")), _num(ryw.get("violations")),
            "–" if ryw.get("rate") is None else f"{float(ryw['rate']):.2%}",
            f"{replay['events']:,} events in {float(replay['seconds']) * 1000:.3g} ms"
            if replay else "–",
            _check(check), _outbox(c.get("outbox"))]))
        if check and check.get("consistent") is not True:
            out.problems.append(f"{label}: the read model against a replay of its log: {check}")
        if (left := (c.get("outbox") or {}).get("backlog_end")):
            out.problems.append(f"{label}: {left:,} appended events were never confirmed by the "
                                "broker within the drain (they stay in the outbox; a restart "
                                "publishes them)")
    return out if out.rows else None


def _outbox(outbox: dict[str, Any] | None) -> str:
    """Peak rows waiting for the broker, and those left after the drain ("–": no outbox)."""
    if not outbox or outbox.get("backlog_max") is None:
        return "–"
    return f"{_num(outbox['backlog_max'])} / {_num(outbox.get('backlog_end'))}"


def _check(check: dict[str, Any]) -> str:
    if not check:
        return "–"
    if check.get("error"):
        return "not checked"
    verdict = "equal" if check.get("consistent") else "DIFFERENT"
    return (f"{verdict}: {check.get('events_in_log', '?'):,} events, {check.get('applied', '?'):,} "
            f"applied once ({check.get('duplicates_dropped', 0):,} repeats dropped), "
            f"{check.get('missing', '?')} missing, {check.get('different', '?')} different")


def lag_over_time(run: Run, spans: Sequence[Span] = ()) -> Figure | None:
    """Per second (first repetition): the p99 projection lag of the events applied in it
    (solid) and, at its end, the age of the oldest event not applied yet (dashed)."""
    path = run.path / "projection.csv"
    if not path.exists():
        return None
    try:
        p = pd.read_csv(path, dtype={"target": str})
    except (ValueError, OSError):
        return None
    if p.empty or "lag_p99_ms" not in p or p["lag_p99_ms"].isna().all():
        return None
    p = p[p["repetition"] == p["repetition"].min()]
    fig, ax = _figure()
    n = 0
    for target, g in p.groupby("target"):
        if g["lag_p99_ms"].isna().all():
            continue
        n += 2
        line = ax.plot(g["second"], g["lag_p99_ms"].clip(lower=FLOOR_MS), marker=".", lw=1.4,
                       label=f"{target}: lag p99 of events applied")[0]
        # sampled as the second ends: drawn at its end
        ax.plot(g["second"] + 1, g["behind_ms"].fillna(0).clip(lower=FLOOR_MS), ls="--",
                marker="x", ms=4, lw=1.1, color=line.get_color(),
                label=f"{target}: age of the oldest event not applied yet")
    _shade(ax, spans)
    _log_ms(ax, "ms (log)")
    ax.set_xlabel("second of measurement (first repetition)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Projection lag over time", loc="left")
    end = _window_end(run)
    if end is not None:
        ax.set_xlim(0, end)
    _legend_below(ax, n)
    return fig


def _num(v: object) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return f"{v:,}" if isinstance(v, int) else str(v)
