"""summary.csv rebuilt from the histograms, when it is damaged, missing, or lacks a target
run (one killed while measuring it).

The histograms hold every measured request, so counts, errors, throughput and the latency
and service-time percentiles come out as the run computed them; intended and achieved rates
come from timeline.csv as the runner summed them. CPU and memory per request are not in
the histograms: a rebuilt row leaves them empty, and the warning says so.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from reports.files import OPTIONAL_SUMMARY_COLUMNS, RUNNING, SUMMARY_COLUMNS, damaged
from reports.loader import NOT_IN_ALL, merge, percentiles_ms

_PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9, "max": 100.0}
NOT_REBUILT = ("CPU and memory per request are not in the histograms, so they are not "
               "shown for it")


def complete_summary(path: Path, context: dict[str, Any], summary: pd.DataFrame,
                     problem: str | None, intervals: pd.DataFrame, timeline: pd.DataFrame,
                     warnings: list[str]) -> pd.DataFrame:
    """The summary to report: as written, rebuilt, or completed (with a warning saying so)."""
    measured = _measured(intervals)
    if problem is not None:
        if not measured:
            raise damaged(path, "summary.csv", problem + "; there are no histograms to rebuild "
                          "it from")
        warnings.append(f"summary.csv is damaged ({problem}): rebuilt from the histograms; "
                        + NOT_REBUILT)
        return _rows(context, intervals, timeline, measured)
    have = set() if summary.empty else {
        (str(t), int(r)) for t, r in zip(summary["target"], summary["repetition"], strict=True)}
    need = [k for k in measured if k not in have]
    if not need:
        return summary
    names = ", ".join(f"{t} r{r}" for t, r in need)
    warnings.append(f"summary.csv has no rows for {names} (the run stopped before it wrote "
                    f"them): rebuilt from the histograms; {NOT_REBUILT}")
    rebuilt = _rows(context, intervals, timeline, need)
    return rebuilt if summary.empty else pd.concat([summary, rebuilt], ignore_index=True)


def _measured(intervals: pd.DataFrame) -> list[tuple[str, int]]:
    if intervals.empty:
        return []
    iv = intervals[(intervals["metric"] == "latency") & (intervals["start_s"] >= 0)]
    return list(dict.fromkeys((str(t), int(r)) for t, r in
                              zip(iv["target"], iv["repetition"], strict=True)))


def _rows(context: dict[str, Any], intervals: pd.DataFrame, timeline: pd.DataFrame,
          which: list[tuple[str, int]]) -> pd.DataFrame:
    rows = []
    for target, rep in which:
        info = next((t for t in context.get("targets") or [] if isinstance(t, dict)
                     and t.get("name") == target and int(t.get("repetition", 1)) == rep), {})
        iv = intervals[(intervals["target"] == target) & (intervals["repetition"] == rep)
                       & (intervals["start_s"] >= 0)]
        seconds = _seconds(info, iv)
        ops = [op for op in dict.fromkeys(iv["operation"]) if op != "all"]
        for op in [*ops, "all"]:
            sel = [o for o in ops if o not in NOT_IN_ALL] if op == "all" else [op]
            rows.append(_row(info, target, rep, op, iv[iv["operation"].isin(sel)], seconds,
                             timeline))
    return pd.DataFrame(rows, columns=[*SUMMARY_COLUMNS, *OPTIONAL_SUMMARY_COLUMNS])


def _seconds(info: dict[str, Any], iv: pd.DataFrame) -> float:
    """What the runner divided by: run.json `measured_s`, else (a run killed mid-target)
    the whole seconds of the window that have histogram intervals."""
    if info.get("status") != RUNNING and info.get("measured_s"):
        return float(info["measured_s"])
    window = float(info.get("duration_s") or math.inf)
    starts = {s for s in iv["start_s"] if s < window}
    return float(min(len(starts), window)) or math.nan


def _row(info: dict[str, Any], target: str, rep: int, op: str, iv: pd.DataFrame,
         seconds: float, timeline: pd.DataFrame) -> dict[str, Any]:
    def hist(metric: str, outcome: str) -> Any:
        return merge(iv[(iv["metric"] == metric) & (iv["outcome"] == outcome)]["histogram"])

    ok, err = hist("latency", "ok"), hist("latency", "error")
    n_ok = ok.get_total_count() if ok is not None else 0
    n_err = err.get_total_count() if err is not None else 0
    row: dict[str, Any] = {
        "target": target, "transport": info.get("transport", target.split("-")[0]),
        "client": info.get("client", ""), "repetition": rep, "operation": op,
        "count": n_ok + n_err, "errors": n_err,
        "error_rate": n_err / (n_ok + n_err) if n_ok + n_err else math.nan,
        "throughput_rps": n_ok / seconds if seconds > 0 else math.nan,
        "saturated": "true" if info.get("saturated") else "false"}
    for metric in ("latency", "service"):
        values = percentiles_ms(hist(metric, "ok"), list(_PERCENTILES.values()))
        for key, p in _PERCENTILES.items():
            row[f"{metric}_{key}_ms"] = values[p]
    if op == "all":
        row["intended_rps"], row["achieved_rps"] = _rates(info, target, rep, seconds, timeline)
    return row


def _rates(info: dict[str, Any], target: str, rep: int, seconds: float,
           timeline: pd.DataFrame) -> tuple[float, float]:
    """Intended and achieved rates as the runner summed them: timeline `all` rows over the
    measured seconds, per second measured."""
    if timeline.empty or not seconds > 0:
        return math.nan, math.nan
    t = timeline[(timeline["target"] == target) & (timeline["repetition"] == rep)
                 & (timeline["operation"] == "all") & (timeline["second"] >= 0)
                 & (timeline["second"] < math.ceil(seconds))]
    if t.empty:
        return math.nan, math.nan
    return float(t["intended"].sum()) / seconds, float(t["achieved"].sum()) / seconds
