"""A real `commbench run` of the REST probe client through uvicorn, with `--processes auto`:
the probe's row is labelled a probe on screen, in run.json, in the report's tables, target
list and plots; the automatic process count is said on screen and recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCENARIO = """
name = "probe"
description = "a tiny run of the probe client"
targets = ["rest:probe"]
duration = "2s"
warmup = "500ms"

[data]
users = 20
orders_per_user = 5

[load]
rate = 100
timeout = "5s"

[operations]
get = 8
create = 2
"""


def test_a_probe_run_is_labelled_a_probe_everywhere(tmp_path: Path) -> None:
    (tmp_path / "probe.toml").write_text(SCENARIO)
    target_cpu = str(max(os.sched_getaffinity(0)))
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(tmp_path / "probe.toml"),
         "--processes", "auto", "--target-cpus", target_cpu, "--report",
         "--results-dir", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = " ".join(proc.stdout.split())  # rich wraps long lines
    free = sorted(os.sched_getaffinity(0) - {int(target_cpu)})
    n = max(1, len(free))
    assert f"--processes auto: {n} generator process(es)" in out
    assert "rest-probe (probe)" in out  # the summary table
    assert "warning: rest-probe: driven by the probe client" in out

    (run_dir,) = (tmp_path / "results").iterdir()
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["generator"]["processes"] == n and meta["generator"]["processes_auto"] is True
    assert meta["arguments"]["processes"] == "auto"
    (target,) = meta["targets"]
    assert (target["name"], target["client"], target["probe_client"]) == ("rest-probe", "probe",
                                                                          True)
    assert target["status"] == "ok"
    assert any(w.startswith("rest-probe: driven by the probe client, a minimal HTTP/1.1 client, "
                            "not a production client") for w in meta["warnings"])

    page = (run_dir / "report.html").read_text()
    assert '<span class="tag probe" title="a probe client, not a production client">probe</span>' \
        in page
    assert "probe (a probe, not a production client)" in page  # the targets table
    assert "were driven by a probe client" in " ".join(page.split())
    plots = list((run_dir / "report").rglob("*.svg"))
    assert plots and all("rest-probe (probe client)" in p.read_text() for p in plots), plots
