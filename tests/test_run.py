"""`commbench run` end to end, as a user runs it: a subprocess against a real REST target,
the result folder checked against results/README.md, and Ctrl-C leaving no process behind."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from hdrh.log import HistogramLogReader

from harness.recorder import new_histogram
from harness.results import ERROR_COLUMNS, SUMMARY_COLUMNS, TIMELINE_COLUMNS

COMMBENCH = str(Path(sys.executable).parent / "commbench")
TINY = """
name = "tiny"
description = "a tiny run for tests"
targets = ["rest"]
duration = "{duration}"
warmup = "500ms"

[data]
users = 20
orders_per_user = 5

[load]
rate = 150
arrival = "poisson"
timeout = "5s"

[operations]
get = 6
list = 2
create = 2
"""


def tiny(tmp_path: Path, duration: str) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(duration=duration))
    return path


def rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def hlog_counts(path: Path) -> dict[str, int]:
    reader = HistogramLogReader(str(path), new_histogram())
    out: dict[str, int] = {}
    while (h := reader.get_next_interval_histogram()) is not None:
        out[h.get_tag()] = out.get(h.get_tag(), 0) + h.get_total_count()
    return out


def test_run_writes_a_complete_result(tmp_path):
    results = tmp_path / "results"
    proc = subprocess.run(
        [COMMBENCH, "run", str(tiny(tmp_path, "2s")), "--processes", "2",
         "--results-dir", str(results)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    (run_dir,) = results.iterdir()
    assert not run_dir.name.startswith(".partial-") and run_dir.name.endswith("-tiny")
    assert f"results: {run_dir}" in proc.stdout
    assert {p.name for p in run_dir.iterdir()} == {
        "run.json", "summary.csv", "timeline.csv", "errors.csv", "histograms", "logs"}
    assert {p.name for p in (run_dir / "histograms").iterdir()} == {
        "rest-r1-latency.hlog", "rest-r1-service.hlog"}
    assert (run_dir / "logs" / "rest-r1.log").exists()

    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["format"] == "commbench-run/1" and meta["status"] == "complete"
    assert meta["run_id"] == run_dir.name
    assert meta["generator"]["processes"] == 2
    assert meta["scenario"]["load"]["stages"] == [{"rate": 150.0, "duration_s": 2.0}]
    for key in ("python", "packages", "cpu_model", "cores", "platform", "git_revision",
                "pinning"):
        assert key in meta["environment"]
    (target,) = meta["targets"]
    assert target["name"] == "rest" and target["client"] == "aiohttp"
    assert target["status"] == "ok" and target["error"] is None

    cols, summary = rows(run_dir / "summary.csv")
    assert tuple(cols) == SUMMARY_COLUMNS
    assert tuple(rows(run_dir / "timeline.csv")[0]) == TIMELINE_COLUMNS
    assert tuple(rows(run_dir / "errors.csv")[0]) == ERROR_COLUMNS
    by_op = {r["operation"]: r for r in summary}
    assert set(by_op) == {"get", "list", "create", "all"}
    assert int(by_op["all"]["count"]) == sum(int(by_op[o]["count"]) for o in ("get", "list",
                                                                              "create"))
    assert 150 <= int(by_op["all"]["count"]) <= 450  # Poisson around 300
    assert float(by_op["all"]["cpu_us_per_request"]) > 0
    assert float(by_op["all"]["rss_mb_max"]) > 10

    # The histograms hold exactly what the summary counts.
    latency = hlog_counts(run_dir / "histograms" / "rest-r1-latency.hlog")
    service = hlog_counts(run_dir / "histograms" / "rest-r1-service.hlog")
    assert latency == service
    for op in ("get", "list", "create"):
        assert latency.get(f"{op}.ok", 0) + latency.get(f"{op}.error", 0) \
            == int(by_op[op]["count"])
        assert latency.get(f"{op}.error", 0) == int(by_op[op]["errors"])

    # The timeline's measured `all` rows add up to the summary; warm-up seconds are negative.
    _, timeline = rows(run_dir / "timeline.csv")
    alls = [r for r in timeline if r["operation"] == "all"]
    assert int(alls[0]["second"]) == -1
    measured = [r for r in alls if int(r["second"]) >= 0]
    assert sum(int(r["count"]) for r in measured) == int(by_op["all"]["count"])
    assert all(r["cpu_percent"] != "" for r in measured)


def test_unknown_target_is_a_one_line_error(tmp_path):
    proc = subprocess.run([COMMBENCH, "run", str(tiny(tmp_path, "1s")), "--targets", "soap",
                           "--results-dir", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("commbench: --targets: unknown target 'soap'; known: "
                                   "rest, grpc, queue")
    assert not (tmp_path / "r").exists()


def test_ctrl_c_keeps_a_partial_result_and_leaves_no_process(tmp_path):
    results = tmp_path / "results"
    proc = subprocess.Popen(
        [COMMBENCH, "run", str(tiny(tmp_path, "60s")), "--results-dir", str(results)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # blocks until the load is on (pytest-timeout bounds it)
            if line.startswith("load on rest r1"):
                break
        else:
            pytest.fail(f"no load line; stderr: {proc.stderr.read() if proc.stderr else ''}")
        # Wait for a measured second on disk, so the partial result has data to keep.
        (partial,) = results.glob(".partial-*")
        deadline = time.monotonic() + 30
        while not any(r["operation"] == "all" and int(r["second"]) >= 1
                      for r in rows(partial / "timeline.csv")[1]):
            assert time.monotonic() < deadline, "no measured second within 30 s"
            time.sleep(0.1)
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        assert len(tree) >= 3  # commbench, the target, a load process (+ helpers)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    gone, alive = psutil.wait_procs(tree, timeout=10)
    assert alive == []
    (run_dir,) = results.iterdir()
    assert not run_dir.name.startswith(".partial-")
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "partial"
    (target,) = meta["targets"]
    assert target["status"] == "interrupted"
    _, summary = rows(run_dir / "summary.csv")
    all_row = next(r for r in summary if r["operation"] == "all")
    assert int(all_row["count"]) > 0


def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    results = tmp_path / "results"
    proc = subprocess.Popen(
        [COMMBENCH, "run", str(tiny(tmp_path, "60s")), "--results-dir", str(results)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("load on rest r1"):
                break
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(signal.SIGTERM)  # only the harness: it must stop its children itself
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130
    _, alive = psutil.wait_procs(tree, timeout=10)
    assert alive == []
    (run_dir,) = results.iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "partial"


def test_a_target_that_dies_is_failed_and_the_others_are_kept(tmp_path):
    results = tmp_path / "results"
    proc = subprocess.Popen(
        [COMMBENCH, "run", str(tiny(tmp_path, "4s")), "--targets", "rest,grpc",
         "--results-dir", str(results)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("load on rest r1"):
                break
        (server,) = [p for p in psutil.Process(proc.pid).children(recursive=True)
                     if "serve" in p.cmdline() and "rest" in p.cmdline()]
        server.kill()  # the target dies mid-run
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 1, err
    (run_dir,) = results.iterdir()
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "complete"
    status = {t["name"]: (t["status"], t["error"]) for t in meta["targets"]}
    assert status["rest"][0] == "failed" and "target exited" in status["rest"][1]
    assert status["grpc"] == ("ok", None)
    _, summary = rows(run_dir / "summary.csv")
    assert {r["target"] for r in summary if r["operation"] == "all"} == {"rest", "grpc"}
    assert "failed: rest r1" in out
