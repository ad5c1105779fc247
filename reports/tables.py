"""Comparison tables: per operation, target × metric, each figure with its spread and its
ratio to the best target, as a long DataFrame and as CSV / Markdown files.

Where figures come from:
- latency and service-time percentiles and max: recomputed from the decoded .hlog
  histograms (warm-up excluded), pooled over every repetition; the spread is the range of
  the per-repetition values. summary.csv is used only when a run has no histograms.
- throughput, error rate, CPU-µs per request and memory: summary.csv, the median of the
  repetitions, spread min–max. CPU and memory are per target (its `all` row) and are shown
  in every operation's table. CPU comes twice: the target's processes (broker included for
  the queue) and the load generator's (`client_cpu_us_per_request`, a later column: runs
  without it simply lack that table column).
The ratio compares targets within one run (the same offered load); best is 1.00.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from reports.loader import Run, percentiles_ms
from reports.stats import Figure


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool = False


METRICS: tuple[Metric, ...] = (
    Metric("throughput", "throughput", "req/s", higher_is_better=True),
    Metric("p50", "latency p50", "ms"),
    Metric("p90", "latency p90", "ms"),
    Metric("p99", "latency p99", "ms"),
    Metric("p999", "latency p99.9", "ms"),
    Metric("max", "latency max", "ms"),
    Metric("service_p99", "service p99", "ms"),
    Metric("error_rate", "error rate", "%"),
    Metric("cpu", "target CPU/request", "µs"),
    Metric("client_cpu", "load generator CPU/request", "µs"),
    Metric("memory", "peak memory", "MB"),
)
METRIC = {m.key: m for m in METRICS}
OPTIONAL_METRICS = frozenset({"client_cpu"})  # columns only some runs have
PER_TARGET = frozenset({"cpu", "client_cpu", "memory"})  # from the target's `all` row
_LATENCY = {"p50": ("latency", 50.0), "p90": ("latency", 90.0), "p99": ("latency", 99.0),
            "p999": ("latency", 99.9), "max": ("latency", 100.0),
            "service_p99": ("service", 99.0)}
_SUMMARY_COLUMN = {"throughput": "throughput_rps", "error_rate": "error_rate",
                   "cpu": "cpu_us_per_request", "memory": "rss_mb_max",
                   "client_cpu": "client_cpu_us_per_request",
                   "p50": "latency_p50_ms", "p90": "latency_p90_ms", "p99": "latency_p99_ms",
                   "p999": "latency_p999_ms", "max": "latency_max_ms",
                   "service_p99": "service_p99_ms"}
OPERATION_ORDER = ("get", "list", "create", "create_accepted", "noop", "all")
OPERATION_LABEL = {"get": "get an order", "list": "list a user's orders",
                   "noop": "nothing (the transport's floor)",
                   "create": "create an order (completed)",
                   "create_accepted": "create an order (accepted by the broker)",
                   "all": "all operations"}
FIGURE_COLUMNS = ["run_id", "target", "operation", "metric", "value", "lo", "hi", "reps",
                  "samples", "ratio", "best"]


def operations(run: Run) -> list[str]:
    """Operations present in the run, in a stable reading order, `all` last."""
    found: set[str] = set()
    if not run.summary.empty:
        found |= set(run.summary["operation"].dropna().astype(str))
    if not run.intervals.empty:
        found |= set(run.intervals["operation"].astype(str))
        found.add("all")
    order = {op: i for i, op in enumerate(OPERATION_ORDER)}
    return sorted(found, key=lambda op: (order.get(op, len(order) - 1), op))


def figures(run: Run) -> pd.DataFrame:
    """Every figure of the run in long form: one row per target × operation × metric."""
    rows: list[dict[str, object]] = []
    for op in operations(run):
        for target in run.targets:
            for key, fig in _target_figures(run, target, op).items():
                rows.append({"run_id": run.run_id, "target": target, "operation": op,
                             "metric": key, "value": fig.value, "lo": fig.lo, "hi": fig.hi,
                             "reps": fig.reps, "samples": fig.samples})
    df = pd.DataFrame(rows, columns=FIGURE_COLUMNS)
    if df.empty:
        return df
    # a (target, operation) the target never ran has only its per-target CPU and memory
    own = df["value"].where(~df["metric"].isin(PER_TARGET))
    df = df[own.groupby([df["target"], df["operation"]]).transform(lambda s: s.notna().any())]
    return _with_ratios(df.reset_index(drop=True))


def figure(df: pd.DataFrame, target: str, operation: str, metric: str) -> Figure:
    """One figure from a figures() frame (NaN when absent)."""
    sel = df[(df["target"] == target) & (df["operation"] == operation) & (df["metric"] == metric)]
    if sel.empty:
        return Figure(math.nan, math.nan, math.nan, 0)
    r = sel.iloc[0]
    return Figure(float(r["value"]), float(r["lo"]), float(r["hi"]), int(r["reps"]),
                  float(r["samples"]))


def _target_figures(run: Run, target: str, op: str) -> dict[str, Figure]:
    reps = run.repetitions
    has_hist = not run.intervals.empty and bool(
        ((run.intervals["target"] == target) & (run.intervals["metric"] == "latency")).any())
    out: dict[str, Figure] = {}
    per_rep_hist: dict[int, dict[str, float]] = {}
    pooled: dict[str, float] = {}
    samples = math.nan
    if has_hist:
        for metric in ("latency", "service"):
            wanted = [p for m, p in _LATENCY.values() if m == metric]
            h = run.histogram(target, op, metric)
            if metric == "latency":
                samples = float(h.get_total_count()) if h is not None else 0.0
            values = percentiles_ms(h, wanted)
            for key, (m, p) in _LATENCY.items():
                if m == metric:
                    pooled[key] = values[p]
            for rep in reps:
                hr = run.histogram(target, op, metric, repetition=rep)
                if hr is None or hr.get_total_count() == 0:
                    continue
                rv = percentiles_ms(hr, wanted)
                for key, (m, p) in _LATENCY.items():
                    if m == metric:
                        per_rep_hist.setdefault(rep, {})[key] = rv[p]
    for metric in METRICS:
        key = metric.key
        if key in _LATENCY and has_hist:
            vals = [v[key] for v in per_rep_hist.values() if key in v and not math.isnan(v[key])]
            out[key] = _fig(pooled.get(key, math.nan), vals, samples)
            continue
        op_for = "all" if key in PER_TARGET else op
        vals = _summary_values(run, target, op_for, _SUMMARY_COLUMN[key])
        if key == "error_rate":
            vals = [v * 100 for v in vals]
        if not vals and key in ("throughput", "error_rate") and has_hist:
            vals = _from_histograms(run, target, op, key)
        value = statistics.median(vals) if vals else math.nan
        out[key] = _fig(value, vals, samples if key in _LATENCY else math.nan)
    if not has_hist:
        count = _summary_values(run, target, op, "count")
        samples = float(sum(count)) if count else math.nan
        for key in _LATENCY:
            f = out[key]
            out[key] = Figure(f.value, f.lo, f.hi, f.reps, samples)
    return out


def _fig(value: float, per_rep: Sequence[float], samples: float) -> Figure:
    if not per_rep:
        return Figure(value, value, value, 0 if math.isnan(value) else 1, samples)
    return Figure(value, min(per_rep), max(per_rep), len(per_rep), samples)


def _summary_values(run: Run, target: str, op: str, column: str) -> list[float]:
    s = run.summary
    if s.empty or column not in s:
        return []
    sel = s[(s["target"] == target) & (s["operation"] == op)][column]
    return [float(v) for v in sel if not pd.isna(v)]


def _from_histograms(run: Run, target: str, op: str, key: str) -> list[float]:
    """Throughput or error rate of a run without summary.csv (a partial run)."""
    out = []
    for rep in run.repetitions:
        ok = run.histogram(target, op, repetition=rep)
        err = run.histogram(target, op, repetition=rep, outcome="error")
        n_ok = ok.get_total_count() if ok else 0
        n_err = err.get_total_count() if err else 0
        if not n_ok + n_err:
            continue
        if key == "error_rate":
            out.append(100.0 * n_err / (n_ok + n_err))
        else:
            out.append(n_ok / _measured_s(run, target, rep))
    return out


def _measured_s(run: Run, target: str, rep: int) -> float:
    """The seconds a target run measured: run.json's `measured_s` (what the runner divided
    by), else the interval logs' seconds inside the planned window (a request finishing in
    the drain may open one more interval, which is not measured time)."""
    rows = [t for t in run.target_info(target) if int(t.get("repetition", 1)) == rep]
    measured = [float(t["measured_s"]) for t in rows if t.get("measured_s")]
    if measured:
        return measured[0]
    iv = run.intervals
    sel = iv[(iv["target"] == target) & (iv["repetition"] == rep) & (iv["start_s"] >= 0)]
    window = run.window_s(target, rep)
    if window is not None:
        sel = sel[sel["start_s"] < window]
    return float(sel.drop_duplicates("start_s")["length_s"].sum()) or math.nan


def _with_ratios(df: pd.DataFrame) -> pd.DataFrame:
    higher = {m.key for m in METRICS if m.higher_is_better}
    ratios, best = [], []
    for (_op, metric), group in df.groupby(["operation", "metric"], sort=False):
        known = group["value"].dropna()
        top = (known.max() if metric in higher else known.min()) if not known.empty else math.nan
        for idx, v in group["value"].items():
            if math.isnan(v) or math.isnan(top):
                r = math.nan
            elif top == 0:
                r = 1.0 if v == 0 else math.inf
            else:
                r = v / top
            ratios.append((idx, r))
            best.append((idx, not math.isnan(v) and v == top and len(known) > 1))
    df = df.copy()
    df["ratio"] = pd.Series(dict(ratios))
    df["best"] = pd.Series(dict(best)).astype(bool)
    return df


# ---- presentation -------------------------------------------------------------------------

def fmt(value: float, metric: str, unit: bool = True) -> str:
    """A figure as a reader wants it: thousands separators, about three significant digits;
    error rates with their % sign unless `unit` is False (a table under a '%' header)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if metric in METRIC and METRIC[metric].unit == "%" and not unit:
        return f"{value:.2f}" if value < 10 else f"{value:.1f}"
    if metric in METRIC and METRIC[metric].unit == "%":
        return f"{value:.2f} %" if value < 10 else f"{value:.1f} %"
    a = abs(value)
    if a >= 100:
        return f"{value:,.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def fmt_ratio(r: float) -> str:
    if math.isnan(r):
        return ""
    if math.isinf(r):
        return ""  # the best is zero (no errors): a ratio says nothing
    return f"×{r:.2f}"


@dataclass
class Cell:
    text: str
    spread: str
    ratio: str
    best: bool


@dataclass
class Table:
    operation: str
    title: str
    columns: list[tuple[str, str]]  # (metric label, unit)
    rows: list[tuple[str, list[Cell]]]
    reps: int


def tables(df: pd.DataFrame) -> list[Table]:
    """One display table per operation from a figures() frame."""
    out = []
    if df.empty:
        return out
    known = set(df.loc[df["value"].notna(), "metric"])
    shown = [m for m in METRICS if m.key not in OPTIONAL_METRICS or m.key in known]
    for op in dict.fromkeys(df["operation"]):
        sel = df[df["operation"] == op]
        reps = int(sel["reps"].max()) if not sel.empty else 1
        rows = []
        for target in dict.fromkeys(sel["target"]):
            cells = []
            for m in shown:
                f = sel[(sel["target"] == target) & (sel["metric"] == m.key)]
                if f.empty:
                    cells.append(Cell("–", "", "", False))
                    continue
                r = f.iloc[0]
                spread = ""
                if int(r["reps"]) >= 2:
                    spread = f"{fmt(r['lo'], m.key, False)}–{fmt(r['hi'], m.key, False)}"
                cells.append(Cell(fmt(r["value"], m.key, False), spread, fmt_ratio(r["ratio"]),
                                  bool(r["best"])))
            rows.append((str(target), cells))
        out.append(Table(op, OPERATION_LABEL.get(op, op),
                         [(m.label, m.unit) for m in shown], rows, reps))
    return out


def wide(df: pd.DataFrame, operation: str) -> pd.DataFrame:
    """Numeric wide table for one operation: per metric its value, min, max and ratio."""
    sel = df[df["operation"] == operation]
    out = pd.DataFrame(index=pd.Index(list(dict.fromkeys(sel["target"])), name="target"))
    for m in METRICS:
        f = sel[sel["metric"] == m.key].set_index("target")
        out[m.key] = f["value"]
        out[f"{m.key}_min"] = f["lo"]
        out[f"{m.key}_max"] = f["hi"]
        out[f"{m.key}_ratio"] = f["ratio"]
    return out


def markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table: value [min–max] ×ratio, best in bold."""
    head = ["target", *(f"{label} ({unit})" for label, unit in table.columns)]
    lines = [f"### {table.title}", "", "| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] + ["---:"] * len(table.columns)) + "|"]
    for target, cells in table.rows:
        parts = []
        for c in cells:
            text = f"**{c.text}**" if c.best else c.text
            if c.spread:
                text += f" [{c.spread}]"
            if c.ratio:
                text += f" {c.ratio}"
            parts.append(text)
        lines.append("| " + " | ".join([target, *parts]) + " |")
    return "\n".join(lines) + "\n"


def write_tables(df: pd.DataFrame, folder: Path) -> list[Path]:
    """Write figures.csv (long), <operation>.csv (wide) and <operation>.md; return the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "figures.csv"]
    df.to_csv(written[0], index=False)
    for t in tables(df):
        csv_path, md_path = folder / f"{t.operation}.csv", folder / f"{t.operation}.md"
        wide(df, t.operation).to_csv(csv_path)
        md_path.write_text(markdown(t))
        written += [csv_path, md_path]
    return written
