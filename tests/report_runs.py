"""Real short runs for the report tests, made once per test session and shared.

`commbench run` of the quick scenario against REST and gRPC, a few seconds each. Memoised
at module level so test_reports, test_compare and test_report_browser reuse the same runs
(each test module's session fixture calls in here; conftest.py stays untouched).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from harness.run.window import SATURATION_LAG_FLOOR_MS

ROOT = Path(__file__).resolve().parent.parent
_CACHE: dict[str, Path] = {}


def commbench(*args: str, cwd: Path = ROOT, timeout: float = 180) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess (exit codes and stderr as a user sees them)."""
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def real_run(base: Path, key: str = "one-rep") -> Path:
    """A run folder from `commbench run`; key picks the shape (see RUNS)."""
    if key in _CACHE:
        return _CACHE[key]
    out = base / key
    out.mkdir(parents=True)
    p = commbench("run", "scenarios/quick.toml", *RUNS[key], "--results-dir", str(out))
    if p.returncode != 0:
        raise RuntimeError(f"commbench run failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    (folder,) = [d for d in out.iterdir() if d.is_dir() and not d.name.startswith(".")]
    _CACHE[key] = folder
    return folder


RUNS: dict[str, list[str]] = {
    # 300 requests per target: enough for p50/p90, too few to judge p99 (the report says so)
    "one-rep": ["--targets", "rest,grpc", "--rate", "100", "--duration", "3s"],
    # a second rate and two repetitions: spreads, throughput against latency, compare noise
    "two-reps": ["--targets", "rest,grpc", "--rate", "150", "--duration", "2s",
                 "--repetitions", "2"],
}


LABELS = {"rest": "REST", "grpc": "gRPC", "queue": "the queue"}  # as a reader sees them


def recorded_flags(run: Path) -> tuple[list[str], list[str]]:
    """The targets of a real run on which the generator was flagged, (fell behind, lagging
    only), as the run itself recorded it. A busy 2-core machine can push the schedule lag
    p99 past 10 ms (behind), or past a fifth of the latency p99 (lagging; harness.run.window),
    on a 100 req/s run, so tests built on a shared run expect the wording that matches this
    record, never a quiet machine. The record is first checked for consistency: run.json's
    flag and its kind, the summary's `saturated` column, the warning naming the target and
    the kind, and the rule applied to the per-second lag and counts in timeline.csv must all
    agree."""
    ctx = json.loads((run / "run.json").read_text())
    flagged = [t["name"] for t in ctx["targets"] if t["saturated"]]
    kinds = {t["name"]: t["schedule"]["flag"] for t in ctx["targets"] if t["saturated"]}
    assert all(t["saturated"] == (t["schedule"]["flag"] is not None) for t in ctx["targets"])
    s = pd.read_csv(run / "summary.csv")
    in_summary = set(s.loc[s["saturated"].astype(str).str.lower() == "true", "target"])
    assert in_summary == set(flagged), (flagged, in_summary)
    warned = {t["name"] for t in ctx["targets"]
              if any(w.startswith(f"generator {kinds.get(t['name'])} on {t['name']} ")
                     for w in ctx["warnings"])}
    assert warned == set(flagged), (flagged, ctx["warnings"])
    t = pd.read_csv(run / "timeline.csv")
    for target in ctx["targets"]:
        name, seconds = target["name"], math.ceil(target["duration_s"])
        g = t[(t["target"] == name) & (t["repetition"] == target["repetition"])
              & (t["operation"] == "all") & t["second"].between(0, seconds - 1)]
        short = g["achieved"].sum() < 0.99 * g["intended"].sum()
        lagged = (g["schedule_lag_p99_ms"] >= SATURATION_LAG_FLOOR_MS).any()
        # Each second's lag p99 under the floor (0.5 ms; the 10 ms clause is above it) keeps
        # the window's under it too; a single lagging second need not lift the window's. So:
        # short → flagged, and flagged → short or some second lagged.
        assert not short or target["saturated"], (name, g.to_dict("records"))
        assert not target["saturated"] or short or lagged, (name, g.to_dict("records"))
    return ([t for t in flagged if kinds[t] == "saturated"],
            [t for t in flagged if kinds[t] == "lagging"])


def copy_run(run: Path, dest: Path) -> Path:
    """A private copy of a run folder that a test may damage."""
    target = dest / run.name
    shutil.copytree(run, target)
    return target


def without_manifest(run: Path) -> Path:
    """A run as commbench wrote it before run.json listed its files (so a test may edit
    them as an older run's own)."""
    ctx = json.loads((run / "run.json").read_text())
    ctx.pop("files", None)
    (run / "run.json").write_text(json.dumps(ctx))
    return run


def partial_copy(run_dir: Path, dest: Path) -> Path:
    """An interrupted run: status partial, grpc never measured, no summary.csv written."""
    copy = copy_run(run_dir, dest)
    ctx = json.loads((copy / "run.json").read_text())
    ctx["status"] = "partial"
    ctx["targets"] = [t for t in ctx["targets"] if t["name"] == "rest"]
    ctx.pop("files")  # written by hand: no manifest vouches for these files
    (copy / "run.json").write_text(json.dumps(ctx))
    (copy / "summary.csv").unlink()
    for f in (copy / "histograms").glob("grpc-*"):
        f.unlink()
    t = pd.read_csv(copy / "timeline.csv")
    t[t["target"] == "rest"].to_csv(copy / "timeline.csv", index=False)
    return copy
