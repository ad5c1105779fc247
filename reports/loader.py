"""Result folders → pandas DataFrames and decoded HdrHistograms.

Reads only the files described in results/README.md, so a report works on any run folder
whatever produced it (the engine, locust, a copy from another machine). Problems the user
can fix are ReportErrors naming the folder or file; problems that still leave something to
report (a partial run, a failed target, a missing file, a summary rebuilt from the
histograms) become warnings shown in the report. A damaged file is never read as if it
were whole (reports.files): summary.csv is rebuilt from the histograms, any other damaged
file is refused.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from hdrh.histogram import HdrHistogram

from reports.errors import ReportError
from reports.files import (
    ERRORS_COLUMNS,
    OPTIONAL_SUMMARY_COLUMNS,
    OPTIONAL_TIMELINE_COLUMNS,
    RUNNING,
    SUMMARY_COLUMNS,
    TIMELINE_COLUMNS,
    damaged,
    manifest_problems,
    read_csv,
    read_histograms,
)

__all__ = ["FORMAT", "NOT_IN_ALL", "SUMMARY_COLUMNS", "TIMELINE_COLUMNS", "ERRORS_COLUMNS",
           "OPTIONAL_SUMMARY_COLUMNS", "Run", "load_run", "load_runs", "merge", "percentiles_ms"]
FORMAT = "commbench-run/1"
HISTOGRAM_METRICS = ("latency", "service")
# A queue creation is recorded twice (accepted and completed); "all" counts it once.
NOT_IN_ALL = frozenset({"create_accepted"})


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

    def probes(self) -> set[str]:
        """Targets driven by a probe client (`rest:probe`): a minimal client to see the server
        without a client library's cost, not a production client; labelled so everywhere."""
        return {str(t["name"]) for t in self.context.get("targets", [])
                if t.get("probe_client") and "name" in t}

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
    killed = context.get("status") == RUNNING  # unfinished: still running, or SIGKILLed
    if killed:
        warnings.append(
            f"unfinished run {context.get('run_id', path.name)}: it is still running, or was "
            "killed before it could finish (SIGKILL, a crash); the figures cover what it had "
            "written, and `commbench clean` finalises it")
    if context.get("status") != "complete" or path.name.startswith(".partial-"):
        context["status"] = "partial"
        if not killed:
            warnings.append(
                f"partial run {context.get('run_id', path.name)}: it was interrupted or failed; "
                "the figures cover only what was measured before it stopped")
    for name, error in _failed(context).items():
        warnings.append(f"target {name} failed: {error}")
    warnings += [str(w) for w in context.get("warnings", [])]

    problems = manifest_problems(path, context)
    summary, summary_problem = read_csv(
        path / "summary.csv", SUMMARY_COLUMNS, warnings, problem=problems.get("summary.csv"),
        killed=killed, optional=OPTIONAL_SUMMARY_COLUMNS)
    frames = {}
    for name, columns, optional in (("timeline.csv", TIMELINE_COLUMNS, OPTIONAL_TIMELINE_COLUMNS),
                                    ("errors.csv", ERRORS_COLUMNS, [])):
        frames[name], problem = read_csv(path / name, columns, warnings, optional=optional,
                                         problem=problems.get(name), killed=killed)
        if problem is not None:
            raise damaged(path, name, problem)
    intervals = read_histograms(path / "histograms", warnings, problems=problems, killed=killed)
    from reports.rebuild import complete_summary  # it reads Run's helpers from this module

    summary = complete_summary(path, context, summary, summary_problem, intervals,
                               frames["timeline.csv"], warnings)
    if summary.empty and intervals.empty:
        warnings.append(f"{path.name}: no measurements at all (no summary.csv rows, no histograms)")
    if not summary.empty and "saturated" in summary:
        summary["saturated"] = summary["saturated"].map(_truthy)
    return Run(path=path, context=context, summary=summary, timeline=frames["timeline.csv"],
               errors=frames["errors.csv"], intervals=intervals, warnings=warnings)


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


def _not_a_run(path: Path) -> str:
    if path.name.startswith(".partial-"):
        return (f"{path}: an unfinished run without run.json (written by a commbench older than "
                "this one, which wrote run.json only at the end); nothing describes it")
    entries = [p for p in path.iterdir() if not p.name.startswith(".")] if path.is_dir() else []
    unfinished = sorted(p for p in path.glob(".partial-*") if p.is_dir())
    waiting = (f"; {len(unfinished)} unfinished run folder(s), e.g. {unfinished[-1]}: pass one "
               "to read what it measured, or run `commbench clean` to finalise or remove "
               "them") if unfinished else ""
    if not entries:
        return (f"{path}: holds no finished run" + waiting if unfinished else
                f"{path}: empty folder, not a commbench run (no run.json)")
    runs = sorted(p for p in entries if (p / "run.json").exists())
    if runs:
        return (f"{path}: holds {len(runs)} run folder(s), not a run itself; "
                f"pass one, e.g. {runs[-1]}" + waiting)
    return f"{path}: not a commbench run (no run.json)" + waiting


def _failed_rows(context: dict[str, Any]) -> list[dict[str, Any]]:
    """run.json target rows (one per target and repetition) whose status is not ok."""
    return [t for t in context.get("targets", [])
            if isinstance(t, dict) and t.get("status", "ok") != "ok"]


def _error(row: dict[str, Any]) -> str:
    if row.get("status") == RUNNING:
        return "the run stopped while measuring it (killed, or still running)"
    return str(row.get("error") or row.get("status"))


def _failed(context: dict[str, Any]) -> dict[str, str]:
    """`name (repetition n)` → error, for warnings."""
    return {f"{t.get('name')} (repetition {t.get('repetition', 1)})": _error(t)
            for t in _failed_rows(context)}


def _truthy(v: object) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in {"true", "1", "yes"}
    return bool(v) and not (isinstance(v, float) and math.isnan(v))
