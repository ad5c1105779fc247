"""Real short runs for the report tests, made once per test session and shared.

`commbench run` of the quick scenario against REST and gRPC, a few seconds each. Memoised
at module level so test_reports, test_compare and test_report_browser reuse the same runs
(each test module's session fixture calls in here; conftest.py stays untouched).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

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
