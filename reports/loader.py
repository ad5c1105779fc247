"""Result folders → pandas DataFrames and decoded HdrHistograms.

Reads only the files described in results/README.md, so a report works on any run folder
whatever produced it (the engine, locust, a copy from another machine). Problems the user
can fix are UserErrors naming the folder; problems that still leave something to report
(a partial run, a failed target, a missing file) become warnings shown in the report.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from hdrh.histogram import HdrHistogram

from reports.errors import ReportError

FORMAT = "commbench-run/1"
HISTOGRAM_METRICS = ("latency", "service")
# A queue creation is recorded twice (accepted and completed); "all" counts it once.
NOT_IN_ALL = frozenset({"create_accepted"})
_HLOG_NAME = re.compile(r"^(?P<target>.+)-r(?P<rep>\d+)-(?P<metric>latency|service)\.hlog$")
_HLOG_LINE = re.compile(
    r"^(?:Tag=(?P<tag>[^,]*),)?(?P<start>-?[\d.]+),(?P<length>[\d.]+),(?P<max>[\d.]+),(?P<payload>\S+)$"
)
_HLOG_BASE = re.compile(r"^#\[BaseTime: *(-?[\d.]+)")
_HLOG_START = re.compile(r"^#\[StartTime: *(-?[\d.]+)")


@dataclass
class Run:
    """One result folder, read. DataFrames are empty (with their columns) when a file is missing."""

    path: Path
    context: dict[str, Any]
    summary: pd.DataFrame
    timeline: pd.DataFrame
    errors: pd.DataFrame
    intervals: pd.DataFrame  # target, repetition, metric, operation, outcome, start_s, length_s, histogram
    warnings: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(self.context.get("run_id") or self.path.name)

    @property
    def scenario(self) -> dict[str, Any]:
        return self.context.get("scenario") or {}

    @property
    def scenario_name(self) -> str:
        return str(self.scenario.get("name") or self.context.get("scenario_file") or "unknown")

    @property
    def stages(self) -> list[tuple[float, float, float]]:
        """The offered load as (start_s, end_s, rate) windows of the measured time (open loop).

        run.json writes `load.stages` (a single stage for a plain rate); `load.rate` is read too.
        """
        load = self.scenario.get("load") or {}
        raw = load.get("stages") or []
        if not raw and load.get("rate") is not None:
            raw = [{"rate": load["rate"], "duration_s": self.scenario.get("duration_s", 0)}]
        out, t0 = [], 0.0
        for s in raw:
            length = float(s.get("duration_s", s.get("duration", 0)) or 0)
            if s.get("rate") is not None:
                out.append((t0, t0 + length, float(s["rate"])))
            t0 += length
        return out

    @property
    def rate(self) -> float | None:
        """The one offered rate of an unstaged open-loop run, else None."""
        rates = {r for _, _, r in self.stages}
        return rates.pop() if len(rates) == 1 else None

    @property
    def partial(self) -> bool:
        return self.context.get("status") != "complete"

    @property
    def targets(self) -> list[str]:
        """Target names in the order they were measured, then any only seen in the data."""
        names = [t["name"] for t in self.context.get("targets", []) if "name" in t]
        for source in (self.summary, self.intervals):
            if not source.empty:
                names += [str(t) for t in source["target"].unique()]
        return list(dict.fromkeys(names))

    @property
    def repetitions(self) -> list[int]:
        reps = {int(t.get("repetition", 1)) for t in self.context.get("targets", [])}
        if not self.summary.empty:
            reps |= {int(r) for r in self.summary["repetition"].unique()}
        return sorted(reps) or [1]

    def target_info(self, target: str) -> list[dict[str, Any]]:
        """run.json rows of one target (one per repetition)."""
        return [t for t in self.context.get("targets", []) if t.get("name") == target]

    def window_s(self, target: str, repetition: int | None = None) -> float | None:
        """Length of the measured window of a target (run.json target row `duration_s`,
        else the scenario's `duration_s`): seconds after it are the drain, not measurement."""
        rows = [t for t in self.target_info(target)
                if repetition is None or int(t.get("repetition", 1)) == repetition]
        values = [float(t["duration_s"]) for t in rows if t.get("duration_s") is not None]
        if values:
            return max(values)
        d = self.scenario.get("duration_s")
        return float(d) if d is not None else None

    def by_url(self) -> dict[str, str]:
        """Target → what run.json says of its CPU, for targets measured by URL (`--url`):
        commbench did not start them, so their CPU and memory are empty unless --pid named
        their processes."""
        return {str(t["name"]): str(t.get("cpu") or "") for t in self.context.get("targets", [])
                if t.get("measured_by_url") and "name" in t}

    def failed_targets(self) -> dict[str, str]:
        """Target → error for every target with a repetition whose status is not ok."""
        return {str(t.get("name")): _error(t) for t in _failed_rows(self.context)}

    def histogram(
        self,
        target: str,
        operation: str,
        metric: str = "latency",
        repetition: int | None = None,
        outcome: str = "ok",
        seconds: tuple[float, float] | None = None,
    ) -> HdrHistogram | None:
        """Merge the measured intervals (warm-up excluded) of one target × operation.

        operation "all" merges every operation except the duplicate queue accept; repetition
        None merges every repetition; seconds (from, to) limits to intervals starting there.
        """
        df = self.intervals
        if df.empty:
            return None
        mask = (df["target"] == target) & (df["metric"] == metric) & (df["outcome"] == outcome)
        mask &= df["start_s"] >= 0
        if operation == "all":
            mask &= ~df["operation"].isin(NOT_IN_ALL)
        else:
            mask &= df["operation"] == operation
        if repetition is not None:
            mask &= df["repetition"] == repetition
        if seconds is not None:
            mask &= (df["start_s"] >= seconds[0]) & (df["start_s"] < seconds[1])
        return merge(df.loc[mask, "histogram"])


def merge(histograms: Iterable[HdrHistogram]) -> HdrHistogram | None:
    """Sum histograms into a new one shaped like the first (None when there are none)."""
    out: HdrHistogram | None = None
    for h in histograms:
        if out is None:
            out = HdrHistogram(h.lowest_trackable_value, h.highest_trackable_value,
                               h.significant_figures)
        out.add(h)
    return out


def percentiles_ms(h: HdrHistogram | None, percentiles: Sequence[float]) -> dict[float, float]:
    """Percentiles (0–100) of a microsecond histogram, in milliseconds; NaN when empty.

    Uses HdrHistogram's own percentile rule (highest equivalent value of the bucket where the
    cumulative count reaches the target), so figures match any HdrHistogram tool.
    """
    if h is None or h.get_total_count() == 0:
        return {p: math.nan for p in percentiles}
    values = h.get_percentile_to_value_dict(list(percentiles))
    return {p: values.get(p, h.get_max_value()) / 1000.0 for p in percentiles}


def load_run(path: Path) -> Run:
    """Read one run folder; ReportError when it is not a run this version can read."""
    path = Path(path)
    if not path.exists():
        raise ReportError(f"{path}: no such folder")
    if not path.is_dir():
        raise ReportError(f"{path}: not a folder; pass a run folder such as results/<run-id>/")
    run_json = path / "run.json"
    if not run_json.exists():
        raise ReportError(_not_a_run(path))
    try:
        context = json.loads(run_json.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{run_json}: not valid JSON ({exc}); the run folder is damaged") from None
    if not isinstance(context, dict):
        raise ReportError(f"{run_json}: expected a JSON object")
    found = context.get("format")
    if found != FORMAT:
        raise ReportError(
            f"{path}: result format {found!r}, this commbench reads {FORMAT!r}; "
            "re-run the scenario, or report it with the commbench version that wrote it"
        )

    warnings: list[str] = []
    if context.get("status") != "complete" or path.name.startswith(".partial-"):
        context["status"] = "partial"
        warnings.append(
            f"partial run {context.get('run_id', path.name)}: it was interrupted or failed; "
            "the figures cover only what was measured before it stopped"
        )
    for name, error in _failed(context).items():
        warnings.append(f"target {name} failed: {error}")
    warnings += [str(w) for w in context.get("warnings", [])]

    summary = _read_csv(path / "summary.csv", SUMMARY_COLUMNS, warnings,
                        optional=OPTIONAL_SUMMARY_COLUMNS)
    timeline = _read_csv(path / "timeline.csv", TIMELINE_COLUMNS, warnings)
    errors = _read_csv(path / "errors.csv", ERRORS_COLUMNS, warnings)
    intervals = _read_histograms(path / "histograms", warnings)
    if summary.empty and intervals.empty:
        warnings.append(f"{path.name}: no measurements at all (no summary.csv rows, no histograms)")
    if not summary.empty and "saturated" in summary:
        summary["saturated"] = summary["saturated"].map(_truthy)
    return Run(path=path, context=context, summary=summary, timeline=timeline, errors=errors,
               intervals=intervals, warnings=warnings)


def load_runs(paths: Sequence[Path]) -> list[Run]:
    """Read several runs; a second copy of the same folder is refused (it would count twice)."""
    if not paths:
        raise ReportError("no run folder given")
    seen: dict[Path, Path] = {}
    for p in paths:
        real = Path(p).resolve()
        if real in seen:
            raise ReportError(f"{p}: given twice")
        seen[real] = Path(p)
    return [load_run(Path(p)) for p in paths]


def same_scenario(runs: Sequence[Run]) -> bool:
    """True when every run measured the same scenario name (so figures may be set side by side)."""
    return len({r.scenario_name for r in runs}) <= 1


def scenario_warning(runs: Sequence[Run]) -> str | None:
    """The warning shown when runs of different scenarios are reported together."""
    if same_scenario(runs):
        return None
    names = ", ".join(f"{r.run_id} ({r.scenario_name})" for r in runs)
    return (f"these runs measured different scenarios: {names}; each is reported on its own, "
            "and nothing is compared across them")


SUMMARY_COLUMNS = [
    "target", "transport", "client", "repetition", "operation", "count", "errors", "error_rate",
    "throughput_rps", "intended_rps", "achieved_rps", "latency_p50_ms", "latency_p90_ms",
    "latency_p99_ms", "latency_p999_ms", "latency_max_ms", "service_p50_ms", "service_p90_ms",
    "service_p99_ms", "service_p999_ms", "service_max_ms", "cpu_us_per_request", "rss_mb_max",
    "saturated",
]
# Columns added after format 1 was first written: read when present, NaN (no warning) when not.
OPTIONAL_SUMMARY_COLUMNS = ["client_cpu_us_per_request"]
TIMELINE_COLUMNS = [
    "target", "repetition", "second", "operation", "count", "errors", "latency_p50_ms",
    "latency_p99_ms", "service_p99_ms", "intended", "achieved", "schedule_lag_p99_ms",
    "cpu_percent", "rss_mb",
]
ERRORS_COLUMNS = ["target", "repetition", "operation", "kind", "count"]
_STRING_COLUMNS = {"target", "transport", "client", "operation", "kind", "saturated"}


def _read_csv(path: Path, columns: list[str], warnings: list[str],
              optional: Sequence[str] = ()) -> pd.DataFrame:
    """Read a CSV of the format; a missing file or column becomes empty data and a warning
    (an `optional` column becomes NaN silently)."""
    if not path.exists():
        warnings.append(f"{path.parent.name}/{path.name} is missing")
        return pd.DataFrame({c: pd.Series(dtype=object if c in _STRING_COLUMNS else float)
                             for c in [*columns, *optional]})
    try:
        df = pd.read_csv(path, dtype={c: str for c in _STRING_COLUMNS})
    except pd.errors.EmptyDataError:
        warnings.append(f"{path.name} is empty")
        return pd.DataFrame({c: pd.Series(dtype=object if c in _STRING_COLUMNS else float)
                             for c in [*columns, *optional]})
    for c in optional:
        if c not in df.columns:
            df[c] = math.nan
    missing = [c for c in columns if c not in df.columns]
    if missing:
        warnings.append(f"{path.name} lacks columns {', '.join(missing)}")
        for c in missing:
            df[c] = math.nan
    for c in df.columns:
        if c not in _STRING_COLUMNS:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    if "repetition" in df:
        df["repetition"] = df["repetition"].fillna(1).astype(int)
    return df


def _read_histograms(folder: Path, warnings: list[str]) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    if folder.is_dir():
        for f in sorted(folder.glob("*.hlog")):
            m = _HLOG_NAME.match(f.name)
            if not m:
                warnings.append(f"histograms/{f.name}: name not <target>-r<rep>-<metric>.hlog, skipped")
                continue
            try:
                rows += _read_hlog(f, m["target"], int(m["rep"]), m["metric"])
            except Exception as exc:  # a damaged file must not hide the rest of the run
                warnings.append(f"histograms/{f.name}: unreadable ({type(exc).__name__}: {exc})")
    elif (folder.parent / "summary.csv").exists():
        warnings.append("histograms/ is missing: latency figures come from summary.csv alone")
    cols = ["target", "repetition", "metric", "operation", "outcome", "start_s", "length_s",
            "histogram"]
    return pd.DataFrame(rows, columns=cols)


def _read_hlog(path: Path, target: str, rep: int, metric: str) -> list[dict[str, Any]]:
    """Parse an interval log by hand: HistogramLogReader rejects negative (warm-up) timestamps."""
    rows = []
    base = 0.0
    start: float | None = None
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            if m := _HLOG_BASE.match(line):
                base = float(m[1])
            elif m := _HLOG_START.match(line):
                start = float(m[1])
            continue
        m = _HLOG_LINE.match(line.strip())
        if not m:
            continue  # the legend line
        operation, _, outcome = (m["tag"] or "all.ok").rpartition(".")
        t = float(m["start"]) + base - (start if start is not None and base else 0.0)
        rows.append({"target": target, "repetition": rep, "metric": metric,
                     "operation": operation or "all", "outcome": outcome or "ok",
                     "start_s": t, "length_s": float(m["length"]),
                     "histogram": HdrHistogram.decode(m["payload"])})
    return rows


def _not_a_run(path: Path) -> str:
    entries = [p for p in path.iterdir() if not p.name.startswith(".")] if path.is_dir() else []
    if not entries:
        return f"{path}: empty folder, not a commbench run (no run.json)"
    runs = sorted(p for p in entries if (p / "run.json").exists())
    if runs:
        return (f"{path}: holds {len(runs)} run folder(s), not a run itself; "
                f"pass one, e.g. {runs[-1]}")
    return f"{path}: not a commbench run (no run.json)"


def _failed_rows(context: dict[str, Any]) -> list[dict[str, Any]]:
    """run.json target rows (one per target and repetition) whose status is not ok."""
    return [t for t in context.get("targets", [])
            if isinstance(t, dict) and t.get("status", "ok") != "ok"]


def _error(row: dict[str, Any]) -> str:
    return str(row.get("error") or row.get("status"))


def _failed(context: dict[str, Any]) -> dict[str, str]:
    """`name (repetition n)` → error, for warnings."""
    return {f"{t.get('name')} (repetition {t.get('repetition', 1)})": _error(t)
            for t in _failed_rows(context)}


def _truthy(v: object) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in {"true", "1", "yes"}
    return bool(v) and not (isinstance(v, float) and math.isnan(v))
