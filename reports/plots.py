"""Plots as SVG: matplotlib's object API (no pyplot state, Agg canvas), one function per plot.

Every function returns a matplotlib Figure or None when the data cannot draw it; `save`
writes the SVG and returns its text for inline embedding. Time plots take `spans`: shaded
windows (start_s, end_s, label) such as fault injections, so later issues only pass data.
"""

from __future__ import annotations

import io
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before any other matplotlib import: never open a display

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import (
    FixedLocator,
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
    NullLocator,
)

from reports.loader import Run, merge, percentiles_ms
from reports.tables import OPERATION_LABEL

matplotlib.rcParams.update({
    "svg.fonttype": "none",  # text stays text: small files, system sans-serif, no font fetch
    "svg.hashsalt": "commbench",  # stable element ids: identical data, identical file
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
})
PALETTE = {"rest": "#1f77b4", "grpc": "#ff7f0e", "queue": "#2ca02c"}
_EXTRA = ["#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
SPECTRUM_MAX = 99.99
Span = tuple[float, float, str]


def colour(target: str, order: Sequence[str]) -> str:
    """A stable colour per transport; variants (rest-httpx) and unknowns get the spare ones."""
    if target in PALETTE:
        return PALETTE[target]
    extra = [t for t in order if t not in PALETTE]
    return _EXTRA[extra.index(target) % len(_EXTRA)] if target in extra else _EXTRA[-1]


def save(fig: Figure, path: Path) -> str:
    """Write the figure as SVG at path and return the SVG text."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(svg)
    return svg


def _figure(width: float = 7.0, height: float = 3.4) -> tuple[Figure, object]:
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def _log_ms(ax: object, label: str) -> None:
    """A log y axis in milliseconds labelled 1, 2, 5, 10 … in plain numbers."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel(label)


def _legend_below(ax: object, n: int) -> None:
    """Fewer columns for long labels (policy variants: `rest~retries+budget+breaker p99`),
    and the figure taller for each extra row, so the axes never collapse."""
    labels = ax.get_legend_handles_labels()[1]
    longest = max((len(label) for label in labels), default=10)
    ncols = max(1, min(n, 6, 84 // max(longest, 1)))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False,
              ncols=ncols, fontsize=8)
    rows = math.ceil(len(labels) / ncols)
    fig = ax.get_figure()
    fig.set_figheight(fig.get_figheight() + 0.22 * max(0, rows - 1))


def _shade(ax: object, spans: Sequence[Span]) -> None:
    for start, end, label in spans:
        ax.axvspan(start, end, color="#d62728", alpha=0.12, lw=0)
        ax.text((start + end) / 2, 1.0, label, transform=ax.get_xaxis_transform(),
                ha="center", va="bottom", fontsize=8, color="#a01818")


def spectrum_points(h: object, top: float = SPECTRUM_MAX) -> tuple[np.ndarray, np.ndarray]:
    """(x = 1/(1-p), latency ms) from p0 out to `top`, HdrHistogram-plotter style."""
    ks = np.linspace(0.0, -math.log10(1 - top / 100), 121)
    pcts = [round(100 * (1 - 10 ** -k), 6) for k in ks]
    values = percentiles_ms(h, pcts)
    x = np.array([1 / (1 - p / 100) for p in pcts])
    return x, np.array([values[p] for p in pcts])


def shown(target: str, probes: Collection[str]) -> str:
    """A target's name in a legend or on an axis: a probe client's row says so."""
    return f"{target} (probe client)" if target in probes else target


def percentile_spectrum(run: Run, operation: str) -> Figure | None:
    """Latency by percentile per target, x on a log scale of 1/(1-p) out to p99.99."""
    fig, ax = _figure()
    drawn = False
    floor = math.inf
    for target in run.targets:
        h = run.histogram(target, operation)
        if h is None or h.get_total_count() == 0:
            continue
        x, y = spectrum_points(h)
        floor = min(floor, percentiles_ms(h, [10.0])[10.0])
        ax.plot(x, y, label=f"{shown(target, run.probes())} (n={h.get_total_count():,})",
                color=colour(target, run.targets), lw=1.6)
        drawn = True
    if not drawn:
        return None
    ax.set_xscale("log")
    _log_ms(ax, "latency (ms, log)")
    ticks = [1, 2, 10, 100, 1000, 10000]
    names = ["0 %", "50 %", "90 %", "99 %", "99.9 %", "99.99 %"]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: dict(zip(ticks, names, strict=True)).get(v, "")))
    ax.set_xlim(1, 10000)
    if floor > 0:  # a few stray tiny values must not flatten the plot: start near p10
        ax.set_ylim(bottom=floor / 2)
    ax.set_xlabel("percentile")
    ax.set_title(f"Latency by percentile: {OPERATION_LABEL.get(operation, operation)}",
                 loc="left")
    ax.legend(loc="upper left", frameon=False)
    return fig


def _in_window(run: Run, df: pd.DataFrame) -> pd.DataFrame:
    """Rows of df (target, repetition, second) inside each target's measured window: the
    drain after it (slow requests completing late) is not measured time."""
    if df.empty:
        return df
    keep = []
    for r in df[["target", "repetition", "second"]].itertuples(index=False):
        end = run.window_s(str(r.target), int(r.repetition))
        keep.append(r.second >= 0 and (end is None or r.second < end))
    return df[keep]


def _window_end(run: Run) -> float | None:
    """The x limit of time plots: the longest measured window (None: let matplotlib pick)."""
    return max((run.window_s(t) or 0 for t in run.targets), default=0) or None


def per_second_latency(run: Run) -> pd.DataFrame:
    """target, repetition, second, p50, p99 over every operation, from the histograms,
    inside the measured window."""
    iv = run.intervals
    rows: list[dict[str, object]] = []
    if not iv.empty:
        sel = iv[(iv["metric"] == "latency") & (iv["outcome"] == "ok") & (iv["start_s"] >= 0)
                 & (iv["operation"] != "create_accepted")]
        for (target, rep, second), g in sel.groupby(["target", "repetition", "start_s"]):
            v = percentiles_ms(merge(g["histogram"]), [50.0, 99.0])
            rows.append({"target": target, "repetition": rep, "second": second,
                         "p50": v[50.0], "p99": v[99.0]})
    elif not run.timeline.empty:
        t = run.timeline[(run.timeline["operation"] == "all") & (run.timeline["second"] >= 0)]
        for r in t.itertuples():
            rows.append({"target": r.target, "repetition": r.repetition, "second": r.second,
                         "p50": r.latency_p50_ms, "p99": r.latency_p99_ms})
    return _in_window(run, pd.DataFrame(rows, columns=["target", "repetition", "second", "p50",
                                                       "p99"]))


def latency_over_time(run: Run, spans: Sequence[Span] = ()) -> Figure | None:
    """p50 (dashed) and p99 (solid) per second, every operation together; each second is
    drawn at its middle (second 0 covers 0–1 s)."""
    data = per_second_latency(run).dropna(subset=["p99"])
    if data.empty:
        return None
    fig, ax = _figure()
    for target in run.targets:
        for i, (_rep, g) in enumerate(data[data["target"] == target].groupby("repetition")):
            c, alpha = colour(target, run.targets), 1.0 if i == 0 else 0.45
            ax.plot(g["second"] + 0.5, g["p99"], color=c, alpha=alpha, lw=1.5,
                    label=f"{shown(target, run.probes())} p99" if i == 0 else None)
            ax.plot(g["second"] + 0.5, g["p50"], color=c, alpha=alpha, lw=1.2, ls="--",
                    label=f"{shown(target, run.probes())} p50" if i == 0 else None)
    _shade(ax, spans)
    _log_ms(ax, "latency (ms, log)")
    ax.set_xlim(0, _window_end(run))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("second of measurement (warm-up and drain excluded)")
    ax.set_title("Latency over time (all operations)", loc="left")
    _legend_below(ax, 2 * len(run.targets))
    return fig


def offered_rate(run: Run, t: pd.DataFrame) -> tuple[list[float], list[float]]:
    """The offered rate as a step line (x, y): the scenario's stages, else the median of the
    timeline's per-second `intended` counts."""
    if run.stages:
        xs, ys = [], []
        for start, end, rate in run.stages:
            xs += [start, end]
            ys += [rate, rate]
        return xs, ys
    per = t.dropna(subset=["intended"]).groupby("second")["intended"].median()
    return [float(x) for x in per.index], [float(y) for y in per]


def throughput_over_time(run: Run, spans: Sequence[Span] = ()) -> Figure | None:
    """Successful requests completed per second per target, inside the measured window, against the
    offered rate (a black dashed step line drawn on top, so it stays visible where a target
    kept up exactly)."""
    t = run.timeline
    if t.empty:
        return None
    t = _in_window(run, t[t["operation"] == "all"])
    if t.empty or t["count"].isna().all():
        return None
    t = t.assign(ok=t["count"] - t["errors"].fillna(0))
    fig, ax = _figure()
    for target in run.targets:
        for i, (_rep, g) in enumerate(t[t["target"] == target].groupby("repetition")):
            ax.plot(g["second"] + 0.5, g["ok"], color=colour(target, run.targets),
                    alpha=1.0 if i == 0 else 0.45, lw=1.5, marker="o", ms=3,
                    label=shown(target, run.probes()) if i == 0 else None)
    xs, ys = offered_rate(run, t)
    if xs:
        ax.plot(xs, ys, color="black", ls=(0, (4, 3)), lw=1.3, zorder=5, label="offered rate")
    _shade(ax, spans)
    ax.set_ylim(bottom=0, top=max(float(t["ok"].max()), max(ys, default=0)) * 1.15 or 1)
    ax.set_xlim(0, _window_end(run))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("second of measurement (warm-up and drain excluded)")
    ax.set_ylabel("successful requests/s")
    ax.set_title("Throughput over time", loc="left")
    _legend_below(ax, len(run.targets) + 1)
    return fig


def cpu_per_request(figs: pd.DataFrame, order: Sequence[str],
                    probes: Collection[str] = ()) -> Figure | None:
    """CPU-µs per request per target (all operations), whiskers at the repetitions' range:
    the target's processes and, when the run measured it, the load generator's, side by side."""
    def pick(metric: str) -> pd.DataFrame:
        sel = figs[(figs["operation"] == "all") & (figs["metric"] == metric)]
        return sel.dropna(subset=["value"]).set_index("target")

    server, client = pick("cpu"), pick("client_cpu")
    targets = [t for t in dict.fromkeys([*server.index, *client.index])]
    if not targets:
        return None
    parts = [("target", server, 1.0), ("load generator", client, 0.45)]
    parts = [p for p in parts if not p[1].empty]
    height = 0.8 / len(parts)
    fig, ax = _figure(5.5, 1.6 + 0.3 * len(targets) * len(parts))
    top = 0.0
    for k, (name, sel, alpha) in enumerate(parts):
        for i, target in enumerate(targets):
            if target not in sel.index:
                continue
            r = sel.loc[target]
            y = i + (k - (len(parts) - 1) / 2) * height
            err = [[r["value"] - r["lo"]], [r["hi"] - r["value"]]] if r["reps"] >= 2 else None
            ax.barh(y, r["value"], height=height * 0.92, xerr=err, capsize=3,
                    color=colour(target, order), alpha=alpha)
            who = f"{name}: " if len(parts) > 1 else ""
            ax.text(max(r["value"], r["hi"]), y, f"  {who}{r['value']:,.0f} µs", va="center",
                    fontsize=8)
            top = max(top, float(r["hi"]), float(r["value"]))
    ax.set_yticks(range(len(targets)), [shown(t, probes) for t in targets])
    ax.invert_yaxis()
    ax.set_xlabel("CPU µs per request (every completed request, failures included)")
    title = "CPU per request" + (": target vs load generator" if len(parts) > 1 else
                                 " (target processes, broker included for the queue)")
    ax.set_title(title, loc="left")
    ax.grid(axis="y", visible=False)
    ax.set_xlim(0, top * 1.45 or 1)
    return fig


@dataclass(frozen=True)
class RatePoint:
    target: str
    intended: float
    throughput: float
    p99_ms: float


def rate_points(runs: Sequence[Run]) -> list[RatePoint]:
    """One point per target per offered rate: a run's stages, or runs at different rates."""
    points: list[RatePoint] = []
    for run in runs:
        windows = run.stages
        if not windows and not run.summary.empty:  # no scenario load: the intended rate
            rate = run.summary["intended_rps"].dropna().median()
            if not pd.isna(rate):
                windows = [(0.0, math.inf, float(rate))]
        for start, end, rate in windows:
            for target in run.targets:
                h = run.histogram(target, "all", seconds=(start, end))
                if h is None or h.get_total_count() == 0:
                    continue
                seconds = _measured_seconds(run, target, start, end)
                reps = max(1, len(run.repetitions))
                points.append(RatePoint(target, rate, h.get_total_count() / seconds / reps,
                                        percentiles_ms(h, [99.0])[99.0]))
    return points


def _measured_seconds(run: Run, target: str, start: float, end: float) -> float:
    iv = run.intervals
    sel = iv[(iv["target"] == target) & (iv["start_s"] >= start) & (iv["start_s"] < end)]
    per_rep = sel.drop_duplicates(["repetition", "start_s"]).groupby("repetition")["length_s"]
    return float(per_rep.sum().mean()) or 1.0


def throughput_vs_latency(points: Sequence[RatePoint], order: Sequence[str]) -> Figure | None:
    """p99 against achieved throughput, one line per target; drawn only with ≥2 rates."""
    if len({p.intended for p in points}) < 2:
        return None
    fig, ax = _figure()
    for target in order:
        ps = sorted((p for p in points if p.target == target), key=lambda p: p.intended)
        if not ps:
            continue
        ax.plot([p.throughput for p in ps], [p.p99_ms for p in ps], marker="o",
                color=colour(target, order), label=target, lw=1.5)
    _log_ms(ax, "latency p99 (ms, log)")
    ax.set_xlabel("achieved throughput (requests/s)")
    ax.set_title("Throughput against latency (one point per offered rate)", loc="left")
    ax.legend(loc="upper left", frameon=False)
    return fig


def queue_depth(run: Run, spans: Sequence[Span] = ()) -> Figure | None:
    """Messages ready in each queue of the queue targets, per second (queues.csv): a step
    line per queue, so a backlog building up during a fault or a spike and draining after
    it is seen as it happened."""
    path = run.path / "queues.csv"
    if not path.exists():
        return None
    try:
        q = pd.read_csv(path, dtype={"target": str, "queue": str})
    except (ValueError, OSError):
        return None
    q = q.dropna(subset=["ready"])
    if q.empty or not (q["ready"] > 0).any():
        return None
    q = q[q["repetition"] == q["repetition"].min()]
    busy = q.groupby(["target", "queue"])["ready"].transform("max") > 0
    q = q[busy]  # queues that never held a message draw nothing worth a line
    fig, ax = _figure()
    for (target, queue), g in q.groupby(["target", "queue"]):
        short = queue.rsplit(".", 2)[-2:] if ".saga." in queue else queue.rsplit(".", 1)[-1:]
        ax.step(g["second"], g["ready"], where="post", lw=1.3, label=f"{target}: {'.'.join(short)}")
    _shade(ax, spans)
    ax.set_ylabel("messages ready")
    ax.set_xlabel("second of measurement (first repetition)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Queue depth over time", loc="left")
    end = _window_end(run)
    if end is not None:
        ax.set_xlim(0, end)
    _legend_below(ax, len(q.groupby(["target", "queue"])))
    return fig
