"""README, "Failure cascades", what a run records of its faults off the happy path: an
interrupted run ends every fault (a paused service is resumed) before it stops; a broker
fault on a transport without a broker is recorded as not applied. Real REST chains."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.procs import as_a_terminal_starts_it, read_until, still_running, wait_until

pytestmark = [pytest.mark.slow]

COMMBENCH = str(Path(sys.executable).parent / "commbench")
LOAD_ON_S = 60  # four services started and the conformance gate passed
FLOW = """
name = "interrupted-fault"
targets = ["rest"]
topology = "chain"
duration = "60s"
warmup = "0s"
[data]
users = 50
orders_per_user = 2
store = "sqlite"
seed = 5
[load]
rate = 20
arrival = "uniform"
timeout = "10s"
[operations]
create = 1
"""
PLANNED_END_S = 41.0  # payment:pause@1s+40s


def _payment(run: psutil.Process) -> psutil.Process:
    (payment,) = [c for c in run.children(recursive=True)
                  if "serve" in c.cmdline() and "payment" in c.cmdline()]
    return payment


def test_ctrl_c_during_a_pause_ends_the_fault_and_leaves_no_process(tmp_path: Path) -> None:
    """Payment frozen (SIGSTOP) for far longer than the test lets the run go on; Ctrl-C once
    payment is seen stopped: the run exits 130 with a partial result whose
    fault record (run.json and faults.csv) ends at the interruption, well before its
    planned 41 s, with no error from resuming it; no process outlives the run."""
    scenario = tmp_path / "flow.toml"
    scenario.write_text(FLOW)
    results = tmp_path / "results"
    proc = subprocess.Popen(
        [COMMBENCH, "run", str(scenario), "--results-dir", str(results),
         "--fault", "payment:pause@1s+40s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=as_a_terminal_starts_it)
    try:
        read_until(proc, "load on rest r1", LOAD_ON_S)
        run = psutil.Process(proc.pid)
        payment = _payment(run)
        wait_until(lambda: payment.status() == psutil.STATUS_STOPPED, 20, "payment paused")
        tree = [run, *run.children(recursive=True)]
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert still_running(tree, timeout=10) == []
    (run_dir,) = results.iterdir()
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "partial"
    (t,) = meta["targets"]
    assert t["status"] == "interrupted", t
    (fault,) = t["faults"]
    assert fault["kind"] == "pause" and fault["error"] == "", fault
    assert 1.0 <= fault["start_s"] < fault["end_s"] < PLANNED_END_S / 2, fault
    with open(run_dir / "faults.csv", newline="") as f:
        (row,) = csv.DictReader(f)
    assert (row["service"], row["kind"], row["error"]) == ("payment", "pause", ""), row
    assert float(row["end_s"]) == pytest.approx(fault["end_s"]), row


def test_a_broker_fault_on_rest_is_recorded_as_not_applied(tmp_path: Path) -> None:
    """README: on REST and gRPC, which use no broker, the broker fault is recorded as not
    applied (faults.csv `applied`, and why in `detail`), and the run measures as usual."""
    scenario = tmp_path / "flow.toml"
    scenario.write_text(FLOW.replace('duration = "60s"', 'duration = "2s"'))
    results = tmp_path / "results"
    proc = subprocess.run([COMMBENCH, "run", str(scenario), "--results-dir", str(results),
                           "--fault", "broker@500ms+1s"], capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = results.iterdir()
    (t,) = json.loads((run_dir / "run.json").read_text())["targets"]
    assert t["status"] == "ok", t
    with open(run_dir / "faults.csv", newline="") as f:
        (row,) = csv.DictReader(f)
    assert (row["service"], row["kind"], row["applied"], row["error"]) == (
        "broker", "broker", "false", ""), row
    assert "not applied: rest uses no broker" in row["detail"], row
    (fault,) = t["faults"]
    assert fault["applied"] is False, fault
    # nothing failed for it: the creates went on
    with open(run_dir / "summary.csv", newline="") as f:
        (all_row,) = [r for r in csv.DictReader(f) if r["operation"] == "all"]
    assert int(all_row["count"]) > 0 and int(all_row["errors"]) == 0, all_row
