"""Two of the report's policy claims (reports/policy_claims.py) on real runs: policy
variants side by side on a REST or gRPC chain while payment is frozen (SIGSTOP), the figures each
claim rests on read from the run's own histograms and run.json.

A verdict needs three repetitions in which every pair agrees (reports/stats.py
CLAIM_MIN_REPS); three repetitions of two variants would not fit a short test, so each test
runs one, asserts the figures the claim compares and that the claim, judging them, counts
this run's pair the claim's way (its "observed in this run, not a verdict" line). Windows of
five seconds; margins are stated where they are used, and none depends on the machine's
speed beyond them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from reports.claims import UNDECIDED
from reports.loader import Run, load_run
from reports.policy_claims import breaker_recovers_sooner, timeout_fast_errors

pytestmark = [pytest.mark.slow]

COMMBENCH = str(Path(sys.executable).parent / "commbench")
HOP_TIMEOUT_S = 2.0  # the chain's own per-hop timeout without a timeout policy (--hop-timeout)
TIMEOUT_S = 0.3
FLOW = """
name = "policy-claims"
targets = ["{target}"]
topology = "chain"
duration = "{duration}"
warmup = "0s"
[data]
users = 50
orders_per_user = 2
store = "sqlite"
seed = 7
[load]
rate = 40
arrival = "uniform"
timeout = "10s"
[operations]
create = 1
"""
# A frozen payment from 1 s to 4 s of the 5 s window.
PAUSE = "payment:pause@1s+3s"


def _run(tmp_path: Path, target: str, variants: str, *faults: str,
         duration: str = "5s") -> Run:
    scenario = tmp_path / "claims.toml"
    scenario.write_text(FLOW.replace("{duration}", duration).replace("{target}", target)
                        + variants)
    results = tmp_path / "results"
    proc = subprocess.run([COMMBENCH, "run", str(scenario), "--results-dir", str(results),
                           *(a for f in faults for a in ("--fault", f))],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = [d for d in results.iterdir() if not d.name.startswith(".")]
    run = load_run(run_dir)
    for t in json.loads((run_dir / "run.json").read_text())["targets"]:
        assert t["status"] == "ok", t
    return run


def _target(run: Run, name: str) -> dict[str, Any]:
    (t,) = [t for t in run.context["targets"] if t["name"] == name]
    return t


def _failed_service_s(run: Run, name: str) -> tuple[int, float, float]:
    """(count, fastest, slowest) service time in seconds of the target's failed creates."""
    h = run.histogram(name, "create", metric="service", outcome="error")
    assert h is not None and h.get_total_count(), f"{name}: no create failed"
    return h.get_total_count(), h.get_min_value() / 1e6, h.get_max_value() / 1e6


@pytest.mark.parametrize("target", ["rest", "grpc"])
def test_a_timeout_turns_a_frozen_downstream_into_fast_errors(tmp_path: Path,
                                                              target: str) -> None:
    """Payment frozen for 3 s, with and without a 300 ms timeout. A create whose charge gets
    no answer is rejected after a refund attempt, also to payment: two hops. Without the
    policy each hop waits the chain's 2 s hop timeout, so every failed create took at least
    2 s (10 % margin for timer granularity); with it, every one failed within two timeouts
    plus a 1 s margin for a busy 2-core machine (1.6 s, still under the 2 s every failure
    without the timeout took). The claim's own figure, the p99 of every create during the
    fault, answered or failed, is lower with the timeout."""
    run = _run(tmp_path, target, '[[variants]]\nname = "none"\n[[variants]]\nname = "timeouts"\n'
               f'timeout = "{TIMEOUT_S * 1000:.0f}ms"\n', PAUSE)
    n_none, fastest_none, _ = _failed_service_s(run, f"{target}~none")
    n_timeout, _, slowest_timeout = _failed_service_s(run, f"{target}~timeouts")
    # ~40 creates arrive in the pause's first second (the later ones outlast it, answered);
    # with the timeout every one of the ~120 in the pause fails
    assert n_none >= 10 and n_timeout >= 3 * 10, (n_none, n_timeout)
    assert fastest_none >= 0.9 * HOP_TIMEOUT_S, fastest_none
    assert slowest_timeout <= 2 * TIMEOUT_S + 1.0, slowest_timeout
    assert _target(run, f"{target}~timeouts")["policies"]["counts"]["timeouts"] >= n_timeout
    claim = timeout_fast_errors(run, pd.DataFrame())
    assert claim.verdict == UNDECIDED, claim  # one repetition: an observation
    assert claim.observation.startswith(
        "observed in this run, not a verdict: 1 of 1 fault windows answered faster"), claim
    (evidence,) = claim.evidence
    assert evidence.startswith(f"{target}~timeouts vs {target}~none r1"), evidence


RETRIES = (f'timeout = "{TIMEOUT_S * 1000:.0f}ms"\n'
           'retries = { kind = "fixed", max_attempts = 3, base = "10ms" }\n')
BREAKER = ('breaker = { failure_rate = 0.5, window = 10, min_calls = 5, open_for = "500ms", '
           'probes = 2 }\n')


def _attempts_in(run: Run, name: str, seconds: range) -> int:
    """Downstream requests the edge sent in those seconds of the window (timeline.csv)."""
    tl = run.timeline
    rows = tl[(tl["target"] == name) & (tl["operation"] == "all") & tl["second"].isin(seconds)]
    assert len(rows) == len(seconds), rows
    return int(rows["policy_attempts"].sum())


@pytest.mark.parametrize("target", ["rest", "grpc"])
def test_a_breaker_spares_the_frozen_downstream_and_the_edge_recovers(tmp_path: Path,
                                                                      target: str) -> None:
    """Payment frozen for 2 s under 300 ms timeouts and up to 3 attempts per call, with and
    without a breaker. What the breaker does everywhere: once open it fails calls without
    sending them, so in the fault's seconds the edge sends payment at most half the requests
    it sends without one (margin: about a tenth is expected, its half-open probes and the
    calls before it opened). The claim's figure, goodput back after the fault, is measured
    for both variants and judged on this pair; its direction is not asserted: on loopback
    the resumed payment clears what queued within a second in both variants (both came back
    in the fault's next whole second when this test was written), and which one the whole
    seconds favour would depend on the machine's speed."""
    run = _run(tmp_path, target, f'[[variants]]\nname = "retries"\n{RETRIES}'
               f'[[variants]]\nname = "breaker"\n{RETRIES}{BREAKER}',
               "payment:pause@1s+2s", duration="7s")
    plain, broken = _target(run, f"{target}~retries"), _target(run, f"{target}~breaker")
    (fault,) = plain["faults"]
    # the seconds of the fault (its first starts a few ms before it)
    during = range(int(fault["start_s"]), int(fault["end_s"]))
    assert len(during) == 2, fault
    sent_plain, sent_breaker = (_attempts_in(run, n, during) for n in (plain["name"],
                                                                       broken["name"]))
    assert sent_breaker <= 0.5 * sent_plain, (sent_breaker, sent_plain)
    counts = broken["policies"]["counts"]
    assert counts["breaker_opened"] >= 1 and counts["breaker_rejected"] > 0, counts
    assert plain["policies"]["counts"]["breaker_rejected"] == 0
    back = {t["name"]: t["cascade"][0]["goodput_back_s"] for t in (plain, broken)}
    assert None not in back.values(), back  # both recovered within the window
    claim = breaker_recovers_sooner(run, pd.DataFrame())
    assert claim.verdict == UNDECIDED, claim  # one repetition: an observation
    assert claim.observation.startswith("observed in this run, not a verdict: "), claim
    assert claim.observation.endswith(" of 1 fault windows recovered at least 1 s sooner "
                                      "with the breaker"), claim
    assert claim.evidence == [f"{broken['name']} vs {plain['name']} r1: goodput back "
                              f"{back[broken['name']]:g} s vs {back[plain['name']]:g} s "
                              "after the fault"], claim
