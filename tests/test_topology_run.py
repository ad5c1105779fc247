"""The order flow through `commbench run` and `commbench verify`, as a user runs them: three
services per transport stood up by the stage, the flow's checks in the gate, and the books
reconciled from the services' stores into run.json and the report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

COMMBENCH = str(Path(sys.executable).parent / "commbench")
FLOW = """
name = "flow"
targets = ["rest", "grpc", "queue"]
topology = "chain"
duration = "2s"
warmup = "500ms"
[data]
users = 50
orders_per_user = 2
store = "sqlite"
seed = 7
[load]
rate = 40
arrival = "uniform"
[operations]
create = 3
get = 1
"""

pytestmark = [pytest.mark.slow, pytest.mark.broker]


def test_run_reconciles_the_chain_on_every_transport(tmp_path: Path, amqp_url: str) -> None:
    scenario = tmp_path / "flow.toml"
    scenario.write_text(FLOW)
    results = tmp_path / "results"
    proc = subprocess.run([COMMBENCH, "run", str(scenario), "--results-dir", str(results),
                           "--amqp-url", amqp_url, "--report"],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = [d for d in results.iterdir() if not d.name.startswith(".")]
    meta = json.loads((run_dir / "run.json").read_text())
    rows = {t["name"]: t for t in meta["targets"]}
    assert set(rows) == {"rest", "grpc", "queue"}
    for name, t in rows.items():
        assert t["status"] == "ok" and t["topology"] == "chain"
        assert t["conformance"].endswith("checks passed")
        rec = t["reconciliation"]
        assert rec["clean"], (name, rec["problems"])
        assert sum(rec["stuck"].values()) == 0 and rec["double_charges"] == 0
        # every create the generator sent ended in a terminal state the seed decides
        assert sum(rec["load_by_status"].values()) > 0
        assert set(rec["load_by_status"]) <= {"confirmed", "cancelled"}
        services = t["services"]
        expected = {"order", "payment", "inventory"} | ({"notification", "broker"}
                                                        if name == "queue" else set())
        assert set(services) == expected
        assert all(v is not None and v > 0 for v in services.values()), services
        logs = {p.name for p in (run_dir / "logs").iterdir()}
        assert {f"{name}-r1.log", f"{name}-r1-payment.log", f"{name}-r1-inventory.log"} <= logs
    # The same seed and the same request stream: the same outcomes on every transport.
    outcomes = {name: t["reconciliation"]["load_by_status"] for name, t in rows.items()}
    assert outcomes["rest"] == outcomes["grpc"] == outcomes["queue"], outcomes
    html = (run_dir / "report.html").read_text()
    assert "Order flow: the books and the cost per service" in html


def test_verify_runs_the_flow_checks(tmp_path: Path) -> None:
    proc = subprocess.run([COMMBENCH, "verify", "--targets", "grpc", "--topology", "chain",
                           "--logs", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "chain: a declined payment cancels" in proc.stdout
    assert "conformance: all" in proc.stdout
    bad = subprocess.run([COMMBENCH, "verify", "--targets", "grpc", "--topology", "ring",
                          "--logs", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "commbench: --topology: choose one of single, chain, got 'ring'"
