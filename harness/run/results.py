"""Writes a result folder in the format of results/README.md (`commbench-run/1`).

The folder is `results/.partial-<run-id>/` while the run goes; timeline rows and histogram
intervals are written as each second closes, so an interrupted run keeps what it measured.
From the start the folder holds a run.json with status `running` and the writing process
(pid, start time, host), so a run killed by SIGKILL is recognisable as abandoned
(harness/run/abandoned.py). `finish` writes run.json with the size, SHA-256 and row count of
every data file (`files`), so a reader tells a complete file from a damaged one, and renames
the folder to `results/<run-id>/`.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import socket
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from hdrh.histogram import HdrHistogram

from harness.load.recorder import ACCEPTED, MergedSecond, Totals, max_ms, percentile_ms
from targets.policy.events import COUNTERS

FORMAT = "commbench-run/1"
OPERATION_ORDER = ("get", "list", "create", ACCEPTED, "noop")

SUMMARY_COLUMNS = (
    "target", "transport", "client", "repetition", "operation", "count", "errors",
    "error_rate", "throughput_rps", "intended_rps", "achieved_rps",
    "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_p999_ms", "latency_max_ms",
    "service_p50_ms", "service_p90_ms", "service_p99_ms", "service_p999_ms", "service_max_ms",
    "cpu_us_per_request", "rss_mb_max", "saturated", "client_cpu_us_per_request",
)
TIMELINE_COLUMNS = (
    "target", "repetition", "second", "operation", "count", "errors", "latency_p50_ms",
    "latency_p99_ms", "service_p99_ms", "intended", "achieved", "schedule_lag_p99_ms",
    "cpu_percent", "rss_mb", "error_kinds",
    # the chain edge's resilience policies, per second (empty without [policies])
    *(f"policy_{name}" for name in COUNTERS),
)
ERROR_COLUMNS = ("target", "repetition", "operation", "kind", "count")
QUEUE_COLUMNS = ("target", "repetition", "second", "queue", "ready", "unacked")


def run_id_for(scenario_name: str, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{scenario_name}"


def utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_cell(v: object) -> object:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.3f}"
    return v


class HlogWriter:
    """One HdrHistogram interval log (`#[Histogram log format version 1.2]`): tagged
    intervals, values in µs, max column in ms (max_value_unit_ratio 1000)."""

    def __init__(self, path: Path, start_epoch_s: float, comment: str) -> None:
        self._f: TextIO = open(path, "w", encoding="utf-8")
        stamp = datetime.fromtimestamp(start_epoch_s, UTC).strftime("%a %b %d %H:%M:%S UTC %Y")
        self._f.write(f"#{comment}\n")
        self._f.write("#[Histogram log format version 1.2]\n")
        self._f.write(f"#[StartTime: {start_epoch_s:.3f} (seconds since epoch), {stamp}]\n")
        self._f.write(f"#[BaseTime: {start_epoch_s:.3f} (seconds since epoch)]\n")
        self._f.write('"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n')

    def interval(self, tag: str, start_s: float, hist: HdrHistogram) -> None:
        payload = hist.encode().decode("ascii")
        self._f.write(f"Tag={tag},{start_s:.3f},1.000,{hist.get_max_value() / 1000:.3f},"
                      f"{payload}\n")

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


@dataclass
class ResourceSample:
    cpu_percent: float | None
    rss_mb: float | None
    policy: dict[str, int] | None = None  # policy_<counter> → its increase in the second


class TargetResults:
    """The files of one (target, repetition): histograms as they come, rows of timeline.csv
    per merged second, summary and error rows at the end."""

    def __init__(self, writer: ResultWriter, name: str, transport: str, client: str,
                 repetition: int, start_epoch_s: float) -> None:
        self.w = writer
        self.name, self.transport, self.client, self.repetition = name, transport, client, repetition
        comment = f"commbench {writer.run_id} target={name} repetition={repetition}"
        self.hlogs = {
            metric: HlogWriter(writer.dir / "histograms" / f"{name}-r{repetition}-{metric}.hlog",
                               start_epoch_s, f"{comment} metric={metric} unit=us")
            for metric in ("latency", "service")
        }
        writer.hlogs += self.hlogs.values()
        self.resources: dict[int, ResourceSample] = {}
        self._waiting: list[MergedSecond] = []  # seconds whose resource sample is not in yet
        self.last_second: MergedSecond | None = None

    def on_second(self, m: MergedSecond) -> None:
        """A merged second: histogram intervals now (measured seconds only), timeline rows
        once the probe sample of that second is in."""
        if m.second >= 0:
            for (op, outcome, metric), h in sorted(m.hists.items()):
                self.hlogs[metric].interval(f"{op}.{outcome}", float(m.second), h)
            for hl in self.hlogs.values():
                hl.flush()
        self.last_second = m
        self._waiting.append(m)
        self._write_ready(final=False)

    def queue_depths(self, second: int, depths: dict[str, tuple[int | None, int | None]]) -> None:
        for queue, (ready, unacked) in depths.items():
            self.w.queue_row({"target": self.name, "repetition": self.repetition,
                              "second": second, "queue": queue, "ready": ready,
                              "unacked": unacked})

    def resource(self, second: int, sample: ResourceSample) -> None:
        self.resources[second] = sample
        self._write_ready(final=False)

    def _write_ready(self, *, final: bool) -> None:
        last = max(self.resources, default=None)
        while self._waiting and (final or (last is not None and self._waiting[0].second <= last)):
            self._timeline(self._waiting.pop(0))

    def _timeline(self, m: MergedSecond) -> None:
        ops = sorted({k[0] for k in m.hists}, key=_op_key)
        for op in ops:
            ok_lat = m.hists.get((op, "ok", "latency"))
            ok_svc = m.hists.get((op, "ok", "service"))
            errors = _count(m.hists.get((op, "error", "latency")))
            self.w.timeline_row({
                "target": self.name, "repetition": self.repetition, "second": m.second,
                "operation": op, "count": _count(ok_lat) + errors, "errors": errors,
                "latency_p50_ms": percentile_ms(ok_lat, 50),
                "latency_p99_ms": percentile_ms(ok_lat, 99),
                "service_p99_ms": percentile_ms(ok_svc, 99),
                "error_kinds": _kinds(m.errors, (op,)),
            })
        req_ops = [op for op in ops if op != ACCEPTED]
        ok = _merge(m.hists.get((op, "ok", "latency")) for op in req_ops)
        svc = _merge(m.hists.get((op, "ok", "service")) for op in req_ops)
        errors = sum(_count(m.hists.get((op, "error", "latency"))) for op in req_ops)
        res = self.resources.get(m.second)
        self.w.timeline_row({
            "target": self.name, "repetition": self.repetition, "second": m.second,
            "operation": "all", "count": _count(ok) + errors, "errors": errors,
            "latency_p50_ms": percentile_ms(ok, 50), "latency_p99_ms": percentile_ms(ok, 99),
            "service_p99_ms": percentile_ms(svc, 99),
            "intended": m.intended, "achieved": m.started,
            "schedule_lag_p99_ms": percentile_ms(m.lag, 99),
            "cpu_percent": res.cpu_percent if res else None,
            "rss_mb": res.rss_mb if res else None,
            "error_kinds": _kinds(m.errors, req_ops),
            **(res.policy or {} if res else {}),
        })

    def finish(self, totals: Totals, *, cpu_s: float | None, rss_mb_max: float | None,
               saturated: bool, measured_s: float | None = None,
               rates: tuple[int, int, float] | None = None, client_cpu_us: float | None = None,
               duration_s: float | None = None) -> list[dict[str, Any]]:
        """Summary and error rows from the merged totals; returns the summary rows.

        `measured_s`: the part of the measured window actually measured (less than the
        planned duration when the run was stopped); `rates`: (intended, sent, seconds) of the
        window the intended and achieved rates are taken over. `duration_s` alone (the
        locust path) means both are the whole measured totals over that duration."""
        if measured_s is None:
            assert duration_s is not None, "give measured_s or duration_s"
            measured_s = duration_s
        intended, sent, rate_s = rates if rates is not None \
            else (totals.intended, totals.started, measured_s)
        self._write_ready(final=True)
        for hl in self.hlogs.values():
            hl.close()
        ops = sorted({k[0] for k in totals.hists}, key=_op_key)
        rows: list[dict[str, Any]] = []
        base = {"target": self.name, "transport": self.transport, "client": self.client,
                "repetition": self.repetition}
        for op in [*ops, "all"]:
            sel = [o for o in ops if o != ACCEPTED] if op == "all" else [op]
            ok_lat = totals.histogram(sel, "ok", "latency")
            ok_svc = totals.histogram(sel, "ok", "service")
            errors = totals.histogram(sel, "error", "latency").get_total_count()
            count = ok_lat.get_total_count() + errors
            row: dict[str, Any] = dict(base, operation=op, count=count, errors=errors,
                                       error_rate=errors / count if count else None,
                                       throughput_rps=ok_lat.get_total_count() / measured_s
                                       if measured_s > 0 else None)
            for metric, h in (("latency", ok_lat), ("service", ok_svc)):
                row[f"{metric}_p50_ms"] = percentile_ms(h, 50)
                row[f"{metric}_p90_ms"] = percentile_ms(h, 90)
                row[f"{metric}_p99_ms"] = percentile_ms(h, 99)
                row[f"{metric}_p999_ms"] = percentile_ms(h, 99.9)
                row[f"{metric}_max_ms"] = max_ms(h)
            if op == "all":
                row["intended_rps"] = intended / rate_s if rate_s > 0 else None
                row["achieved_rps"] = sent / rate_s if rate_s > 0 else None
                row["cpu_us_per_request"] = cpu_s * 1e6 / count if cpu_s is not None and count \
                    else None
                row["rss_mb_max"] = rss_mb_max
                row["client_cpu_us_per_request"] = client_cpu_us
            row["saturated"] = saturated
            rows.append(row)
            self.w.summary_row(row)
        for (op, kind), n in sorted(totals.errors.items()):
            self.w.error_row({"target": self.name, "repetition": self.repetition,
                              "operation": op, "kind": kind, "count": n})
        return rows


class ResultWriter:
    def __init__(self, results_dir: Path, run_id: str) -> None:
        self.results_dir = results_dir
        self.run_id, self.dir = _claim(results_dir, run_id)
        self.owner = owner()
        self.write_run_json({"status": RUNNING})
        (self.dir / "histograms").mkdir()
        (self.dir / "logs").mkdir()
        self.hlogs: list[HlogWriter] = []
        self._files: dict[str, tuple[TextIO, csv.DictWriter[str]]] = {}
        for name, cols in (("summary.csv", SUMMARY_COLUMNS), ("timeline.csv", TIMELINE_COLUMNS),
                           ("errors.csv", ERROR_COLUMNS)):
            f = open(self.dir / name, "w", newline="", encoding="utf-8")
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            f.flush()  # a run killed before its first row still leaves a readable file
            self._files[name] = (f, w)

    @property
    def log_dir(self) -> Path:
        return self.dir / "logs"

    def target(self, name: str, transport: str, client: str, repetition: int,
               start_epoch_s: float) -> TargetResults:
        return TargetResults(self, name, transport, client, repetition, start_epoch_s)

    def _row(self, name: str, row: dict[str, Any]) -> None:
        f, w = self._files[name]
        w.writerow({k: format_cell(v) for k, v in row.items()})
        f.flush()

    def summary_row(self, row: dict[str, Any]) -> None:
        self._row("summary.csv", row)

    def timeline_row(self, row: dict[str, Any]) -> None:
        self._row("timeline.csv", row)

    def error_row(self, row: dict[str, Any]) -> None:
        self._row("errors.csv", row)

    def queue_row(self, row: dict[str, Any]) -> None:
        """queues.csv, opened when a queue target first reports its depths."""
        if "queues.csv" not in self._files:
            f = open(self.dir / "queues.csv", "w", newline="", encoding="utf-8")
            w = csv.DictWriter(f, fieldnames=QUEUE_COLUMNS)
            w.writeheader()
            self._files["queues.csv"] = (f, w)
        self._row("queues.csv", row)

    def write_run_json(self, meta: dict[str, Any]) -> None:
        """run.json, replaced atomically; while the run goes (status `running`) it names the
        writing process."""
        extra = {"process": self.owner} if meta.get("status") == RUNNING else {}
        write_json(self.dir / "run.json",
                   {"format": FORMAT, "run_id": self.run_id, **meta, **extra})

    def finish(self, meta: dict[str, Any]) -> Path:
        """Close every data file, write run.json with their manifest and move the folder to
        its final name."""
        for f, _ in self._files.values():
            f.close()
        for hl in self.hlogs:
            hl.close()
        self.write_run_json({**meta, "files": manifest(self.dir)})
        self.dir = move_to_final(self.results_dir, self.dir, self.run_id)
        return self.dir


RUNNING = "running"  # run.json status while the run goes (and of a run killed by SIGKILL)
DATA_FILES = ("summary.csv", "timeline.csv", "errors.csv", "policy_events.csv", "projection.csv")


def owner() -> dict[str, Any]:
    """This process, as a later run recognises it: pid, start time (pids are reused), host."""
    import psutil

    return {"pid": os.getpid(), "started": psutil.Process().create_time(),
            "host": socket.gethostname()}


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """Size, SHA-256 and line count (CSV: data rows; .hlog: intervals) of every data file,
    by its path in the folder: run.json's `files`."""
    out: dict[str, dict[str, Any]] = {}
    paths = [folder / n for n in DATA_FILES] + sorted((folder / "histograms").glob("*.hlog"))
    for path in paths:
        if not path.is_file():
            continue
        data = path.read_bytes()
        lines = data.splitlines()
        rows = len(lines) - 1 if path.suffix == ".csv" else \
            sum(1 for ln in lines if ln and not ln.startswith((b"#", b'"')))
        out[path.relative_to(folder).as_posix()] = {
            "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "rows": max(rows, 0)}
    return out


def move_to_final(results_dir: Path, folder: Path, run_id: str) -> Path:
    """Rename a `.partial-` folder to `<run-id>` (or `-2`, `-3`, … when that is taken)."""
    final = results_dir / run_id
    n = 2
    while True:
        if not final.exists():
            try:
                os.rename(folder, final)  # fails if another run took the name meanwhile
                return final
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
        final = results_dir / f"{run_id}-{n}"
        n += 1


def _claim(results_dir: Path, run_id: str) -> tuple[str, Path]:
    """A run id nobody else uses in `results_dir` and its `.partial-` folder, created
    atomically (mkdir fails if another run, even one started in the same second, has it):
    `<run-id>`, else `<run-id>-2`, `-3`, …"""
    results_dir.mkdir(parents=True, exist_ok=True)
    candidate, n = run_id, 2
    while True:
        partial = results_dir / f".partial-{candidate}"
        if not (results_dir / candidate).exists():
            try:
                partial.mkdir()
                return candidate, partial
            except FileExistsError:
                pass
        candidate = f"{run_id}-{n}"
        n += 1


def _kinds(errors: Counter[tuple[str, str]], ops: Sequence[str]) -> str:
    """The second's failures by class, e.g. "timeout:3;unavailable:12" (empty: none)."""
    by_kind: Counter[str] = Counter()
    for (op, kind), n in errors.items():
        if op in ops:
            by_kind[kind] += n
    return ";".join(f"{k}:{n}" for k, n in sorted(by_kind.items()))


def _op_key(op: str) -> int:
    return OPERATION_ORDER.index(op) if op in OPERATION_ORDER else len(OPERATION_ORDER)


def _count(h: HdrHistogram | None) -> int:
    return 0 if h is None else h.get_total_count()


def _merge(hists: Iterable[HdrHistogram | None]) -> HdrHistogram | None:
    out: HdrHistogram | None = None
    for h in hists:
        if h is None:
            continue
        if out is None:
            from harness.load.recorder import new_histogram
            out = new_histogram()
        out.add(h)
    return out
