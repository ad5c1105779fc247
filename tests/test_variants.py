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
