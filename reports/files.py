"""Reading a run folder's data files, telling complete from damaged.

A finished run lists every data file in run.json `files` (bytes, SHA-256, rows): a file
that differs is damaged, whatever it looks like. A run without that list (written before
it existed, or still running, or killed by SIGKILL) is checked by structure: every CSV row
has the header's fields and ends with a newline, every histogram line decodes. The one
damage a killed writer leaves, a cut last line, is dropped with a warning when the run did
not finish; anywhere else damage is reported to the caller (summary.csv) or refused with
one line naming the file (the rest: nothing rebuilds them).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from hdrh.histogram import HdrHistogram

from reports.errors import ReportError

RUNNING = "running"  # run.json status of a run that has not finished (or was killed)
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
OPTIONAL_TIMELINE_COLUMNS = ["error_kinds"]  # failures by class per second, "kind:n;…"
ERRORS_COLUMNS = ["target", "repetition", "operation", "kind", "count"]
STRING_COLUMNS = {"target", "transport", "client", "operation", "kind", "saturated",
                  "error_kinds"}
INTERVAL_COLUMNS = ["target", "repetition", "metric", "operation", "outcome", "start_s",
                    "length_s", "histogram"]
_HLOG_NAME = re.compile(r"^(?P<target>.+)-r(?P<rep>\d+)-(?P<metric>latency|service)\.hlog$")
_HLOG_LINE = re.compile(
    r"^(?:Tag=(?P<tag>[^,]*),)?(?P<start>-?[\d.]+),(?P<length>[\d.]+),(?P<max>[\d.]+),(?P<payload>\S+)$"
)
_HLOG_BASE = re.compile(r"^#\[BaseTime: *(-?[\d.]+)")
_HLOG_START = re.compile(r"^#\[StartTime: *(-?[\d.]+)")


def damaged(folder: Path, name: str, problem: str) -> ReportError:
    """The one-line refusal of a file nothing can rebuild."""
    return ReportError(f"{folder / name}: damaged ({problem}); its figures cannot be rebuilt, "
                       "so the run is not read: restore the file from a copy, or re-run")


def manifest_problems(folder: Path, context: dict[str, Any]) -> dict[str, str]:
    """File (relative path) → what is wrong with it, against run.json `files`."""
    files = context.get("files")
    if not isinstance(files, dict):
        return {}
    out = {}
    for name, want in files.items():
        path = folder / name
        if not path.is_file():
            out[name] = "missing; run.json lists it"
            continue
        data = path.read_bytes()
        size = int(want.get("bytes", -1)) if isinstance(want, dict) else -1
        digest = str(want.get("sha256", "")) if isinstance(want, dict) else ""
        if len(data) != size:
            out[name] = f"{len(data):,} bytes where the run wrote {size:,}"
        elif hashlib.sha256(data).hexdigest() != digest:
            out[name] = "its content differs from what the run wrote: SHA-256 mismatch"
    return out


def empty(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object if c in STRING_COLUMNS else float)
                         for c in columns})


def read_csv(path: Path, columns: list[str], warnings: list[str], *, problem: str | None,
             killed: bool, optional: Sequence[str] = ()) -> tuple[pd.DataFrame, str | None]:
    """A CSV of the format and what is wrong with it (None: nothing). A missing file is a
    warning and empty data (unless `problem`, from the manifest, says it must exist)."""
    if problem is not None:
        return empty([*columns, *optional]), problem
    if not path.exists():
        warnings.append(f"{path.parent.name}/{path.name} is missing")
        return empty([*columns, *optional]), None
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        if not killed:
            return empty([*columns, *optional]), "its last row is cut off"
        data = data[:data.rfind(b"\n") + 1]
        warnings.append(f"{path.name}: its last row was cut when the run was killed; "
                        "that row is left out")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8", "replace"))))
    if not rows:
        warnings.append(f"{path.name} is empty")
        return empty([*columns, *optional]), None
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != len(rows[0]):
            return empty([*columns, *optional]), \
                f"line {n} has {len(row)} fields where the header has {len(rows[0])}"
    df = pd.read_csv(io.BytesIO(data), dtype={c: str for c in STRING_COLUMNS})
    for c in optional:
        if c not in df.columns:
            df[c] = math.nan
    missing = [c for c in columns if c not in df.columns]
    if missing:
        warnings.append(f"{path.name} lacks columns {', '.join(missing)}")
        for c in missing:
            df[c] = math.nan
    for c in df.columns:
        if c not in STRING_COLUMNS:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    if "repetition" in df:
        df["repetition"] = df["repetition"].fillna(1).astype(int)
    return df, None


def read_histograms(folder: Path, warnings: list[str], *, problems: dict[str, str],
                    killed: bool) -> pd.DataFrame:
    """Every interval of every .hlog; ReportError naming a damaged one."""
    rows: list[dict[str, Any]] = []
    run = folder.parent
    for name, problem in problems.items():
        if name.startswith("histograms/"):
            raise damaged(run, name, problem)
    if folder.is_dir():
        for f in sorted(folder.glob("*.hlog")):
            m = _HLOG_NAME.match(f.name)
            if not m:
                warnings.append(f"histograms/{f.name}: name not <target>-r<rep>-<metric>.hlog, "
                                "skipped")
                continue
            rows += _read_hlog(f, m["target"], int(m["rep"]), m["metric"], warnings, killed)
    elif (run / "summary.csv").exists():
        warnings.append("histograms/ is missing: latency figures come from summary.csv alone")
    return pd.DataFrame(rows, columns=INTERVAL_COLUMNS)


def _read_hlog(path: Path, target: str, rep: int, metric: str, warnings: list[str],
               killed: bool) -> list[dict[str, Any]]:
    """Parse an interval log by hand: HistogramLogReader rejects negative (warm-up)
    timestamps, and stops quietly at a line it cannot read."""
    rows = []
    base = 0.0
    start: float | None = None
    data = path.read_bytes()
    text = data.decode("utf-8", "replace")
    lines = text.splitlines()
    cut = bool(data) and not data.endswith(b"\n")
    name = f"histograms/{path.name}"
    for n, line in enumerate(lines, start=1):
        if line.startswith("#"):
            if m := _HLOG_BASE.match(line):
                base = float(m[1])
            elif m := _HLOG_START.match(line):
                start = float(m[1])
            continue
        if line.startswith('"StartTimestamp"'):
            continue  # the legend line
        try:
            m = _HLOG_LINE.match(line.strip())
            if not m:
                raise ValueError("not an interval line")
            histogram = HdrHistogram.decode(m["payload"])
            if histogram is None:
                raise ValueError("its histogram does not decode")
        except Exception as exc:  # hdrh raises several kinds on a damaged payload
            if cut and n == len(lines) and killed:
                warnings.append(f"{name}: its last interval was cut when the run was killed; "
                                "that interval is left out")
                break
            raise damaged(path.parent.parent, name,
                          f"line {n} is not an HdrHistogram interval: {exc}") from None
        operation, _, outcome = (m["tag"] or "all.ok").rpartition(".")
        t = float(m["start"]) + base - (start if start is not None and base else 0.0)
        rows.append({"target": target, "repetition": rep, "metric": metric,
                     "operation": operation or "all", "outcome": outcome or "ok",
                     "start_s": t, "length_s": float(m["length"]), "histogram": histogram})
    return rows
