"""The load shapes of a scenario file (harness/scenario/model.py) through `commbench run`: a
staged open loop and a closed loop of virtual users, each on a real REST server with real
generator processes. The engine's own tests drive the same shapes in-process; these prove
that a scenario file's `stages`, `model = "closed"`, `users` and `think_time` reach the run
and its results as the README and results/README.md describe them.

No assertion depends on the machine's speed: intended counts come from the schedule, and
the closed loop's request count has an upper bound that a slower machine only lowers."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

COMMBENCH = str(Path(sys.executable).parent / "commbench")
RUN_TIMEOUT_S = 240  # a whole short run; generous for a busy 2-core machine
HEAD = """
name = "{name}"
description = "a load shape through commbench run"
targets = ["rest"]
warmup = "500ms"
{duration}
[data]
users = 20
orders_per_user = 5

[operations]
get = 6
list = 2
create = 2

[load]
timeout = "10s"
"""
STAGED = """arrival = "uniform"
stages = [
  { rate = 40, duration = "1s" },
  { rate = 120, duration = "1s" },
]
"""
USERS, THINK_S, WINDOW_S = 2, 0.05, 2.0
CLOSED = f"""model = "closed"
users = {USERS}
think_time = "{THINK_S * 1000:g}ms"
"""


def run(tmp_path: Path, name: str, load: str, duration: str = "") -> tuple[Path, dict]:
    """`commbench run` of a scenario file written here; its one run folder and run.json."""
    scenario, results = tmp_path / f"{name}.toml", tmp_path / "results"
    scenario.write_text(HEAD.format(name=name, duration=duration) + load)
    p = subprocess.run([COMMBENCH, "run", str(scenario), "--results-dir", str(results)],
                       capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert p.returncode == 0, p.stdout + p.stderr
    (run_dir,) = [d for d in results.iterdir() if not d.name.startswith(".")]
    meta = json.loads((run_dir / "run.json").read_text())
    assert [(t["name"], t["status"]) for t in meta["targets"]] == [("rest", "ok")]
    return run_dir, meta


def all_rows(run_dir: Path) -> pd.DataFrame:
    """timeline.csv's per-second `all` rows, indexed by second (warm-up seconds negative)."""
    t = pd.read_csv(run_dir / "timeline.csv")
    return t[t["operation"] == "all"].set_index("second")


def test_a_staged_load_offers_each_stage_in_turn(tmp_path: Path) -> None:
    """`stages`: 40 requests/s for 1 s, then 120/s for 1 s, the warm-up at the first
    stage's rate. The run's duration is the stages' sum, and each measured second's
    intended count is its stage's rate: counted from the schedule itself (uniform
    arrivals), so exact whatever the machine. What was sent never exceeds it."""
    run_dir, meta = run(tmp_path, "staged", STAGED)
    load = meta["scenario"]["load"]
    assert load["model"] == "open" and load["stages"] == [
        {"rate": 40.0, "duration_s": 1.0}, {"rate": 120.0, "duration_s": 1.0}]
    assert meta["scenario"]["duration_s"] == 2.0 and meta["targets"][0]["duration_s"] == 2.0
    seconds = all_rows(run_dir)
    assert seconds.loc[[-1, 0, 1], "intended"].tolist() == [20, 40, 120]  # 0.5 s × 40/s first
    assert (seconds.loc[[-1, 0, 1], "achieved"] <= seconds.loc[[-1, 0, 1], "intended"]).all()
    s = pd.read_csv(run_dir / "summary.csv").set_index("operation")
    assert s.loc["all", "intended_rps"] == pytest.approx((40 + 120) / 2)
    assert s.loc["all", "count"] > 0 and s.loc["all", "errors"] == 0


def test_a_closed_loop_waits_for_each_answer_and_thinks(tmp_path: Path) -> None:
    """`model = "closed"`: 2 virtual users, each sending its next request 50 ms after the
    answer to the last. No arrival schedule: latency equals service time at every
    percentile and in every second ("In a closed loop the two are equal"), each second's
    intended count is what was sent, so the generator is never judged saturated. And the
    loop is closed: a user sends at most once per think time, so at most
    users × (window / think + 1) requests start in the window; with 10 % off the think time
    for early timer wake-ups the bound is stated generously (an open loop, or users that
    did not wait, would send hundreds)."""
    run_dir, meta = run(tmp_path, "closed", CLOSED, duration=f'duration = "{WINDOW_S:g}s"\n')
    load = meta["scenario"]["load"]
    assert (load["model"], load["users"], load["think_time_s"], load["stages"]) == \
        ("closed", USERS, THINK_S, [])
    assert meta["targets"][0]["saturated"] is False
    s = pd.read_csv(run_dir / "summary.csv").set_index("operation")
    assert set(s.index) == {"get", "list", "create", "all"}
    for q in ("p50", "p90", "p99", "p999", "max"):
        assert (s[f"latency_{q}_ms"] == s[f"service_{q}_ms"]).all(), q
    seconds = all_rows(run_dir)
    measured = seconds.loc[seconds.index >= 0]
    assert (seconds["intended"] == seconds["achieved"]).all()
    assert (measured["latency_p99_ms"] == measured["service_p99_ms"]).all()
    count = s.loc["all", "count"]
    assert s.loc["all", "errors"] == 0
    assert 0 < count <= USERS * (WINDOW_S / (0.9 * THINK_S) + 1), count
    assert math.isclose(s.loc["all", "throughput_rps"], count / WINDOW_S, rel_tol=0.01)
