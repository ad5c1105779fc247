"""Writes result folders in the results/README.md format from real HdrHistogram data.

For report tests that need a shape no short real run produces (repetitions with a known
spread, several rates, a saturated generator, a damaged folder). Every figure in summary.csv
and timeline.csv is computed from the histograms written beside it, as the engine does.
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogWriter

from reports.loader import FORMAT, NOT_IN_ALL, SUMMARY_COLUMNS, TIMELINE_COLUMNS


@dataclass
class TargetSpec:
    name: str
    median_ms: float  # lognormal latency per request
    sigma: float = 0.5
    error_share: float = 0.0
    cpu_us: float = 300.0
    status: str = "ok"
    accepted_ms: float | None = None  # a queue: creations also recorded as create_accepted
    peak_slowdown: float = 1.0  # creations this much slower while the highest stage runs
    client_cpu_us: float | None = None  # summary.csv client_cpu_us_per_request, if any


@dataclass
class RunSpec:
    scenario: str = "order-lookup"
    targets: list[TargetSpec] = field(default_factory=lambda: [
        TargetSpec("rest", 4.0), TargetSpec("grpc", 2.0)])
    operations: dict[str, float] = field(default_factory=lambda: {"get": 0.8, "list": 0.2})
    rate: float = 200.0
    seconds: int = 5
    warmup: int = 1
    repetitions: int = 1
    saturated: set[str] = field(default_factory=set)
    lagging: set[str] = field(default_factory=set)  # flagged for lag alone: every request sent
    stages: list[dict[str, float]] | None = None
    faults: list[dict[str, object]] = field(default_factory=list)
    status: str = "complete"
    seed: int = 7
    drain: int = 0  # seconds after the window with late completions (timeline, histograms)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, 60_000_000, 3)


def write_run(root: Path, spec: RunSpec, run_id: str | None = None) -> Path:
    """Write one run folder under root and return it."""
    rng = random.Random(spec.seed)
    run_id = run_id or f"20261127-081500-{spec.scenario}-{spec.seed}"
    path = root / run_id
    (path / "histograms").mkdir(parents=True)
    (path / "logs").mkdir()
    summary_rows: list[dict[str, object]] = []
    timeline_rows: list[dict[str, object]] = []
    error_rows: list[dict[str, object]] = []
    target_rows: list[dict[str, object]] = []
    for rep in range(1, spec.repetitions + 1):
        for t in spec.targets:
            target_rows.append({
                "name": t.name, "transport": t.name.split("-")[0], "client": "default",
                "url": "http://127.0.0.1:1", "repetition": rep, "status": t.status,
                "error": None if t.status == "ok" else "exited with code 1",
                "warmup_s": float(spec.warmup), "duration_s": float(spec.seconds),
                "saturated": t.name in spec.saturated | spec.lagging,
                "schedule": {"flag": "saturated" if t.name in spec.saturated else "lagging"
                             if t.name in spec.lagging else None}})
            if t.status != "ok":
                continue
            _one_target(path, spec, t, rep, rng, summary_rows, timeline_rows, error_rows)
    client_cpu = any(t.client_cpu_us is not None for t in spec.targets)
    _write_csv(path / "summary.csv",
               SUMMARY_COLUMNS + (["client_cpu_us_per_request"] if client_cpu else []),
               summary_rows)
    _write_csv(path / "timeline.csv", TIMELINE_COLUMNS, timeline_rows)
    _write_csv(path / "errors.csv", ["target", "repetition", "operation", "kind", "count"],
               error_rows)
    stages = spec.stages or [{"rate": spec.rate, "duration_s": float(spec.seconds)}]
    load = {"model": "open", "stages": stages, "arrival": "uniform", "in_flight": 256,
            "timeout_s": 5.0}
    context = {
        "format": FORMAT, "run_id": run_id, "status": spec.status,
        "started_at": "2026-11-27T08:15:00Z", "ended_at": "2026-11-27T08:16:00Z",
        "scenario_file": f"scenarios/{spec.scenario}.toml",
        "scenario": {"name": spec.scenario, "description": "test scenario", "load": load,
                     "duration_s": spec.seconds, "warmup_s": spec.warmup,
                     "repetitions": spec.repetitions,
                     "operations": dict(spec.operations), "faults": spec.faults},
        "arguments": {"targets": [t.name for t in spec.targets]},
        "environment": {"python": "3.11.7", "packages": {"grpcio": "1.85.1"},
                        "cpu_model": "Test CPU", "cores": 2, "platform": "Linux",
                        "git_revision": "abc1234",
                        "pinning": {"target_cpus": [1], "load_cpus": [0]}},
        "generator": {"processes": 1, "in_flight_limit": 256, "loop": "uvloop"},
        "targets": target_rows,
        "warnings": [f"generator saturated on {n}: achieved 80 % of the intended rate"
                     for n in sorted(spec.saturated)]
        + [f"generator lagging on {n}: achieved 100 % of the intended rate"
           for n in sorted(spec.lagging)],
    }
    (path / "run.json").write_text(json.dumps(context, indent=2))
    return path


def _rate_at(spec: RunSpec, second: int) -> float:
    if not spec.stages:
        return spec.rate
    t = 0.0
    for stage in spec.stages:
        t += float(stage["duration_s"])
        if second < t:
            return stage["rate"]
    return spec.stages[-1]["rate"]


def _one_target(path: Path, spec: RunSpec, t: TargetSpec, rep: int, rng: random.Random,
                summary: list, timeline: list, errors: list) -> None:
    ops = [*spec.operations]
    recorded = [*ops, *(["create_accepted"] if t.accepted_ms and "create" in ops else [])]
    hists = {m: {} for m in ("latency", "service")}  # metric → (second, op, outcome) → hist
    totals = {(m, op): new_histogram() for m in ("latency", "service")
              for op in [*recorded, "all"]}
    counts = {op: [0, 0] for op in [*recorded, "all"]}
    share = 0.8 if t.name in spec.saturated else 1.0
    peak = max((float(st["rate"]) for st in spec.stages or []), default=None)
    for second in range(-spec.warmup, spec.seconds + spec.drain):
        drain = second >= spec.seconds
        n = 3 if drain else int(_rate_at(spec, max(second, 0)) * share)
        per_second = {(m, op): new_histogram() for m in ("latency", "service")
                      for op in recorded}
        errs = {op: new_histogram() for op in ops}
        slow = t.peak_slowdown if peak is not None and _rate_at(spec, second) == peak else 1.0
        for _ in range(n):
            op = rng.choices(ops, weights=[spec.operations[o] for o in ops])[0]
            factor = slow if op == "create" else 1.0
            service_us = max(1, int(rng.lognormvariate(0, t.sigma) * t.median_ms * factor
                                    * 1000))
            latency_us = service_us + rng.randrange(0, 200)
            if rng.random() < t.error_share:
                errs[op].record_value(latency_us)
                if second >= 0:  # late completions (drain) are measured too
                    counts[op][1] += 1
                    counts["all"][1] += 1
                continue
            samples = [(op, latency_us, service_us)]
            if op == "create" and "create_accepted" in recorded:
                accept_us = max(1, int(rng.lognormvariate(0, t.sigma) * t.accepted_ms * 1000))
                samples.append(("create_accepted", accept_us + rng.randrange(0, 200),
                                accept_us))
            for name, lat_us, svc_us in samples:
                per_second["latency", name].record_value(lat_us)
                per_second["service", name].record_value(svc_us)
                if second >= 0:  # late completions (drain) are measured too
                    counts[name][0] += 1
                    for m, v in (("latency", lat_us), ("service", svc_us)):
                        totals[m, name].record_value(v)
                        if name not in NOT_IN_ALL:
                            totals[m, "all"].record_value(v)
            if second >= 0:  # late completions (drain) are measured too
                counts["all"][0] += 1
        for (m, op), h in per_second.items():
            hists[m][second, op, "ok"] = h
        for op, h in errs.items():
            if h.get_total_count():
                hists["latency"][second, op, "error"] = h
        if second >= 0:
            for op in recorded:
                lat, svc = per_second["latency", op], per_second["service", op]
                timeline.append({
                    "target": t.name, "repetition": rep, "second": second, "operation": op,
                    "count": lat.get_total_count(),
                    "errors": errs[op].get_total_count() if op in errs else 0,
                    "latency_p50_ms": lat.get_value_at_percentile(50) / 1000,
                    "latency_p99_ms": lat.get_value_at_percentile(99) / 1000,
                    "service_p99_ms": svc.get_value_at_percentile(99) / 1000})
            timeline.append({
                "target": t.name, "repetition": rep, "second": second, "operation": "all",
                "count": sum(per_second["latency", o].get_total_count() for o in ops),
                "errors": sum(errs[o].get_total_count() for o in ops),
                "intended": 0 if drain else _rate_at(spec, second),
                "achieved": 0 if drain else n, "schedule_lag_p99_ms": 0.1,
                "cpu_percent": t.cpu_us * n / 10_000, "rss_mb": 60.0 + second})
    for metric, by_key in hists.items():
        buf = io.StringIO()
        writer = HistogramLogWriter(buf)
        writer.output_log_format_version()
        writer.output_legend()
        for (second, op, outcome), h in sorted(by_key.items()):
            h.set_tag(f"{op}.{outcome}")
            buf.write(f"Tag={op}.{outcome},")
            writer.output_interval_histogram(h, float(second), float(second) + 1.0,
                                             max_value_unit_ratio=1000.0)
        (path / "histograms" / f"{t.name}-r{rep}-{metric}.hlog").write_text(buf.getvalue())
    for op in [*recorded, "all"]:
        ok, err = counts[op]
        lat, svc = totals["latency", op], totals["service", op]
        row: dict[str, object] = {
            "target": t.name, "transport": t.name.split("-")[0], "client": "default",
            "repetition": rep, "operation": op, "count": ok + err, "errors": err,
            "error_rate": err / (ok + err) if ok + err else 0.0,
            "throughput_rps": ok / spec.seconds, "intended_rps": spec.rate,
            "achieved_rps": (ok + err) / spec.seconds,
            "saturated": t.name in spec.saturated | spec.lagging}
        for name, h in (("latency", lat), ("service", svc)):
            for p, col in ((50, "p50"), (90, "p90"), (99, "p99"), (99.9, "p999")):
                row[f"{name}_{col}_ms"] = h.get_value_at_percentile(p) / 1000
            row[f"{name}_max_ms"] = h.get_max_value() / 1000
        if op == "all":
            row["cpu_us_per_request"] = t.cpu_us * (1 + 0.02 * rep)
            row["rss_mb_max"] = 60.0 + spec.seconds
            if t.client_cpu_us is not None:
                row["client_cpu_us_per_request"] = t.client_cpu_us * (1 + 0.02 * rep)
        summary.append(row)
    for op in ops:
        if counts[op][1]:
            errors.append({"target": t.name, "repetition": rep, "operation": op,
                           "kind": "timeout", "count": counts[op][1]})
    assert not NOT_IN_ALL & set(ops)


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, object]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in columns})
