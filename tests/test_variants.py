"""Policy variants side by side in one `commbench run` (real REST chain, a real fault), and
the claims the report draws from them."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from reports.claims import UNDECIDED, check_claims
from reports.loader import load_run
from reports.tables import figures

COMMBENCH = str(Path(sys.executable).parent / "commbench")
SCENARIO = """
name = "variants"
targets = ["rest"]
topology = "chain"
duration = "4s"
warmup = "0s"
repetitions = 2
[data]
users = 50
orders_per_user = 2
store = "sqlite"
seed = 5
[load]
rate = 30
arrival = "uniform"
timeout = "10s"
[operations]
create = 1
[[variants]]
name = "plain"
[[variants]]
retries = { kind = "fixed", max_attempts = 4, base = "1ms" }
[[faults]]
service = "payment"
kind = "errors"
fraction = 1.0
at = "1s"
duration = "2s"
"""


@pytest.mark.slow
def test_variants_run_side_by_side_rotated_and_judged(tmp_path: Path) -> None:
    scenario = tmp_path / "variants.toml"
    scenario.write_text(SCENARIO)
    results = tmp_path / "results"
    proc = subprocess.run([COMMBENCH, "run", str(scenario), "--results-dir", str(results)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = results.iterdir()
    meta = json.loads((run_dir / "run.json").read_text())
    # each repetition runs every (target, variant); the order rotates like targets do
    order = [(t["name"], t["repetition"]) for t in meta["targets"]]
    assert order == [("rest~plain", 1), ("rest~retries", 1), ("rest~retries", 2),
                     ("rest~plain", 2)]
    with open(run_dir / "summary.csv", newline="") as f:
        names = {r["target"] for r in csv.DictReader(f)}
    assert names == {"rest~plain", "rest~retries"}
    for t in meta["targets"]:
        assert t["status"] == "ok", t
        pol = t["policies"]
        if t["name"] == "rest~plain":
            assert pol["amplification"] == 1.0 and pol["counts"] is None
        else:  # every call fails for 2 of 4 s: up to 4 attempts each
            assert pol["name"] == "retries" and pol["amplification"] > 1.5, pol
    claims = {c.key: c for c in check_claims(load_run(run_dir), figures(load_run(run_dir)))}
    amplify = claims["retries-amplify"]
    assert amplify.verdict == UNDECIDED  # two repetitions: an observation, not a verdict
    assert amplify.observation.startswith("observed in this run, not a verdict: 2 of 2")
    assert all("attempts per call" in e for e in amplify.evidence)


def _scenario(**extra: object) -> dict:
    raw = {"name": "v", "targets": ["rest"], "topology": "chain", "duration": "2s",
           "operations": {"create": 1}, "load": {"rate": 10}}
    raw.update(extra)
    return raw


@pytest.mark.parametrize(("extra", "message"), [
    ({"variants": [{}, {}]}, "x.toml: variants[1]: is named 'none' like an earlier one: give it "
                             "its own name"),
    ({"variants": [{}], "policies": {"timeout": "1s"}},
     "x.toml: variants: replace [policies]: give one or the other"),
    ({"variants": [{}], "topology": "single"},
     'x.toml: variants: apply to the chain\'s hops: set topology = "chain"'),
    ({"variants": [{"name": f"v{n}"} for n in range(9)]},
     'x.toml: variants: must be a list of at most 8 [[variants]] tables, got [{"name": "v0"}'),
])
def test_bad_variants(extra: dict, message: str) -> None:
    from harness.scenario import parse_scenario
    from harness.scenario.model import ScenarioError

    with pytest.raises(ScenarioError) as err:
        parse_scenario(_scenario(**extra), "x.toml")
    assert any(p.startswith(message) for p in err.value.problems), err.value.problems


def test_a_variant_run_names_its_broker_objects_as_amqp_allows() -> None:
    """Exchange names may hold letters, digits, '-', '_', '.' and ':' only (a '+' made the
    queue server refuse to start); distinct variants keep distinct names."""
    import re

    from harness.run.target_run import TargetRun
    from harness.scenario import parse_scenario, parse_target

    sc = parse_scenario(_scenario(variants=[{"name": "a+b"}, {"name": "a-b"}, {"name": "a_b"}]),
                        "x.toml")
    names = [TargetRun(parse_target("queue"), 1, sc, policy_set=v).broker_name
             for v in sc.variants]
    assert all(re.fullmatch(r"[A-Za-z0-9_.:-]+", n) for n in names), names
    assert len(set(names)) == 3


QUEUE_POLICIES = """
name = "qpol"
targets = ["queue"]
topology = "chain"
duration = "4s"
warmup = "0s"
[data]
users = 50
orders_per_user = 2
store = "sqlite"
seed = 5
[load]
rate = 150
arrival = "uniform"
timeout = "10s"
[operations]
create = 1
[policies]
timeout = "1s"
shed = 48
"""


@pytest.mark.slow
def test_the_queue_applies_its_deadline_and_its_bound(tmp_path: Path) -> None:
    """The edge frozen 1.5 s under 150 creates/s with [policies] timeout 1 s and shed 48: the
    client stops waiting after 1 s (fast errors, not the 10 s load timeout), the command
    queue refuses what passes its bound (kind `rejected`: a second of backlog is 150), the
    edge drops commands whose deadline passed (counted), the broker those that expired in
    the queue (dead letters), and no order is left half-done."""
    scenario = tmp_path / "q.toml"
    scenario.write_text(QUEUE_POLICIES)
    results = tmp_path / "results"
    proc = subprocess.run([COMMBENCH, "run", str(scenario), "--results-dir", str(results),
                           "--fault", "order:pause@1s+1500ms"], capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = results.iterdir()
    (t,) = json.loads((run_dir / "run.json").read_text())["targets"]
    assert t["status"] == "ok", t
    with open(run_dir / "errors.csv", newline="") as f:
        kinds = {r["kind"]: int(r["count"]) for r in csv.DictReader(f)}
    # 225 arrive in the pause; the edge holds at most its prefetch (64), the queue 48
    assert kinds.get("rejected", 0) > 20 and kinds.get("timeout", 0) > 0, kinds
    assert t["policies"]["counts"]["deadline_expired"] > 0, t["policies"]
    assert "not_applied" not in t["policies"]
    assert t["reconciliation"]["clean"], t["reconciliation"]["problems"]
    from reports.loader import load_run, percentiles_ms

    failed = load_run(run_dir).histogram("queue", "create", outcome="error")
    # a refused or expired create fails within its 1 s deadline (+ scheduling slack on a
    # busy 2-core machine), never after the load's 10 s timeout
    assert percentiles_ms(failed, [99])[99] < 3000
