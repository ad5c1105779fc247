"""`commbench run` end to end, as a user runs it: a subprocess against a real REST target,
the result folder checked against results/README.md, and Ctrl-C leaving no process behind."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest
from hdrh.log import HistogramLogReader

from harness.load.engine import EngineStats
from harness.load.recorder import Merger, SecondRecord, new_histogram
from harness.load.workers import WorkerPool
from harness.run.results import (
    ERROR_COLUMNS,
    SUMMARY_COLUMNS,
    TIMELINE_COLUMNS,
    ResultWriter,
    run_id_for,
)
from harness.run.runner import Runner, RunOptions, TargetRun
from harness.stage.broker import delete_namespace
from targets.redact import redact_text
from tests.procs import NoLine, as_a_terminal_starts_it, ignores, read_until, still_running

# From the start of `commbench run` to its "load on" line: start, conformance gate and
# warm-up take about 3 s on a quiet 2-core machine; 60 s is generous for a busy one.
LOAD_ON_S = 60

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
    gc_pauses = target["gc"]  # the generator's collections, both processes summed
    assert set(gc_pauses) == {"collections", "total_ms", "max_ms"}
    assert gc_pauses["collections"] >= 0 and 0 <= gc_pauses["max_ms"] <= gc_pauses["total_ms"]

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
    # The generator's own CPU is charged to the transport too (the last column).
    assert SUMMARY_COLUMNS[-1] == "client_cpu_us_per_request"
    assert float(by_op["all"]["client_cpu_us_per_request"]) > 0
    assert all(r["client_cpu_us_per_request"] == "" for op, r in by_op.items() if op != "all")
    assert target["measured_s"] == 2.0 and target["namespace"] is None
    assert meta["broker"] is None  # no queue target: no broker used

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
    # intended_rps and achieved_rps count the measured window's seconds only (not the drain),
    # as results/README.md says and as the saturation warning judges them.
    window = [r for r in measured if int(r["second"]) < 2]
    assert float(by_op["all"]["intended_rps"]) == pytest.approx(
        sum(int(r["intended"]) for r in window) / 2, abs=0.001)
    assert float(by_op["all"]["achieved_rps"]) == pytest.approx(
        sum(int(r["achieved"]) for r in window) / 2, abs=0.001)


def test_unknown_target_is_a_one_line_error(tmp_path):
    proc = subprocess.run([COMMBENCH, "run", str(tiny(tmp_path, "1s")), "--targets", "soap",
                           "--results-dir", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("commbench: --targets: unknown target 'soap'; known: "
                                   "rest, grpc, queue, eventsourced")
    assert not (tmp_path / "r").exists()


def start_long_run(tmp_path: Path, results: Path) -> subprocess.Popen[str]:
    """`commbench run` of a 60 s scenario in its own session, returned once load is on."""
    proc = subprocess.Popen(
        [COMMBENCH, "run", str(tiny(tmp_path, "60s")), "--results-dir", str(results)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=as_a_terminal_starts_it)
    try:
        read_until(proc, "load on rest r1", LOAD_ON_S)
    except NoLine:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return proc


def test_ctrl_c_keeps_a_partial_result_and_leaves_no_process(tmp_path):
    results = tmp_path / "results"
    proc = start_long_run(tmp_path, results)
    try:
        # Wait for a measured second on disk, so the partial result has data to keep.
        (partial,) = results.glob(".partial-*")
        deadline = time.monotonic() + 30
        while not any(r["operation"] == "all" and int(r["second"]) >= 1
                      for r in rows(partial / "timeline.csv")[1]):
            assert time.monotonic() < deadline, "no measured second within 30 s"
            time.sleep(0.1)
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        assert len(tree) >= 3  # commbench, the target, a load process (+ helpers)
        assert not ignores(proc.pid, signal.SIGINT), "commbench started with Ctrl-C ignored"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert still_running(tree, timeout=10) == []
    (run_dir,) = results.iterdir()
    assert not run_dir.name.startswith(".partial-")
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "partial"
    (target,) = meta["targets"]
    assert target["status"] == "interrupted"
    _, summary = rows(run_dir / "summary.csv")
    all_row = next(r for r in summary if r["operation"] == "all")
    assert int(all_row["count"]) > 0
    # Rates are over the time actually measured (a few seconds), not the planned 60 s, and
    # the interruption is not mistaken for a saturated generator.
    assert 1 <= target["measured_s"] < 60
    ok = int(all_row["count"]) - int(all_row["errors"])
    assert float(all_row["throughput_rps"]) == pytest.approx(ok / target["measured_s"], rel=0.01)
    # Divided by the planned 60 s instead, throughput would be at most count / 60; the run
    # was stopped well before 30 s, so over the seconds measured it is more than twice that,
    # however slowly a busy machine served (no absolute rate is assumed).
    assert float(all_row["throughput_rps"]) > 2 * int(all_row["count"]) / 60
    # The requests the stop kept from being sent are not counted as the generator falling
    # behind: every whole second before the stop was sent in full. (Schedule lag on a busy
    # 2-core machine may still flag the run; that is the lag rule, not the stop.)
    saturation = [w for w in meta["warnings"]
                  if w.startswith(("generator saturated on ", "generator lagging on "))]
    achieved = [re.search(r"achieved (\d+)% of the intended rate over the", w) for w in saturation]
    assert all(m and int(m.group(1)) >= 99 for m in achieved), saturation
    assert (all_row["saturated"] == "true") == bool(saturation) == target["saturated"]


def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    results = tmp_path / "results"
    proc = start_long_run(tmp_path, results)
    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(signal.SIGTERM)  # only the harness: it must stop its children itself
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 143  # 128 + SIGTERM, as a shell reports a terminated command
    assert still_running(tree, timeout=10) == []
    (run_dir,) = results.iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "partial"


def test_a_target_that_dies_is_failed_and_the_others_are_kept(tmp_path):
    results = tmp_path / "results"
    proc = subprocess.Popen(
        [COMMBENCH, "run", str(tiny(tmp_path, "4s")), "--targets", "rest,grpc",
         "--results-dir", str(results)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        read_until(proc, "load on rest r1", LOAD_ON_S)
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
    assert status["rest"][0] == "failed" and "target was killed by SIGKILL" in status["rest"][1]
    assert status["grpc"] == ("ok", None)
    _, summary = rows(run_dir / "summary.csv")
    assert {r["target"] for r in summary if r["operation"] == "all"} == {"rest", "grpc"}
    assert "failed: rest r1" in out


def test_a_target_listed_twice_is_refused(tmp_path):
    proc = subprocess.run([COMMBENCH, "run", str(tiny(tmp_path, "1s")), "--targets", "rest,rest",
                           "--results-dir", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "commbench: --targets: rest is listed twice"
    assert not (tmp_path / "r").exists()


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path):
    """Another run already holds this second's folder name: the run takes `<id>-2`."""
    results = tmp_path / "results"
    results.mkdir()
    now = datetime.now(UTC)
    taken = {run_id_for("tiny", now + timedelta(seconds=s)) for s in range(-1, 30)}
    for run_id in taken:
        (results / f".partial-{run_id}").mkdir()
    proc = subprocess.run([COMMBENCH, "run", str(tiny(tmp_path, "1s")), "--results-dir",
                           str(results)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    (run_dir,) = [p for p in results.iterdir() if not p.name.startswith(".partial-")]
    assert run_dir.name.endswith("-tiny-2") and run_dir.name[:-2] in taken
    assert json.loads((run_dir / "run.json").read_text())["run_id"] == run_dir.name


def test_result_writers_with_one_run_id_never_collide(tmp_path):
    first = ResultWriter(tmp_path, "20260101-000000-x")
    second = ResultWriter(tmp_path, "20260101-000000-x")
    assert (first.run_id, second.run_id) == ("20260101-000000-x", "20260101-000000-x-2")
    assert second.finish({}) == tmp_path / "20260101-000000-x-2"
    assert first.finish({}) == tmp_path / "20260101-000000-x"
    third = ResultWriter(tmp_path, "20260101-000000-x")  # a finished folder holds the name too
    assert third.run_id == "20260101-000000-x-3"


def test_every_run_has_its_own_queue_namespace(tmp_path):
    path = tiny(tmp_path, "1s")
    a, b = (Runner(RunOptions(str(path), targets="queue")) for _ in range(2))
    assert a.run_id == b.run_id  # the same second
    ra, rb = (TargetRun(r.scenario.targets[0], 1, r.scenario) for r in (a, b))
    assert a._namespace(ra) != b._namespace(rb)
    assert re.fullmatch(rf"cb-{a.run_id}-[0-9a-f]{{8}}-queue-r1", a._namespace(ra))


@pytest.mark.parametrize("status", ["running", "interrupted"])
def test_generator_messages_are_collected_alike_running_or_stopping(tmp_path, status):
    """While the load runs and while an interrupted run stops, messages are read one way:
    seconds merged, each process's stats kept as it finishes (run.json in_flight_waits), and
    an error fails a running target or, once it is stopping, becomes a warning."""
    runner = Runner(RunOptions(str(tiny(tmp_path, "1s"))))
    r = TargetRun(runner.scenario.targets[0], 1, runner.scenario, status=status)
    merged: list[int] = []
    r.pool, r.merger = WorkerPool([]), Merger(2, lambda m: merged.append(m.started))
    runner._collect(r, [("second", 0, SecondRecord(0, started=4)),
                        ("second", 1, SecondRecord(0, started=5)),
                        ("done", 0, EngineStats(in_flight_waits=3)),
                        ("error", 1, "Boom: it broke\nTraceback ...")])
    assert merged == [9]
    assert [s.in_flight_waits for s in r.stats] == [3]
    if status == "running":
        assert (r.status, r.error) == ("failed", "load process 1: Boom: it broke")
    else:
        assert r.status == "interrupted"
        assert runner.warnings == ["rest r1: load process 1: Boom: it broke"]


def test_broker_urls_are_recorded_without_their_password():
    opts = RunOptions("quick", amqp_url="amqp://bench:s3cret@127.0.0.1:5672/")
    assert "s3cret" not in json.dumps(opts.arguments())
    assert redact_text("cannot reach amqp://bench:s3cret@h:5672/?namespace=x: refused") \
        == "cannot reach amqp://bench:***@h:5672/?namespace=x: refused"


def test_a_queue_target_that_loses_its_broker_is_failed(tmp_path, amqp_url):
    """The QA case: another run deletes this run's queues mid-run. The queue server exits
    saying why, the target is failed (not ok, not saturated), the rates cover what was
    measured, and run.json says which broker was used."""
    results = tmp_path / "results"
    proc = subprocess.Popen(
        [COMMBENCH, "run", str(tiny(tmp_path, "30s")), "--targets", "queue", "--amqp-url",
         amqp_url, "--results-dir", str(results)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        read_until(proc, "load on queue r1", LOAD_ON_S)
        (server,) = [p for p in psutil.Process(proc.pid).children(recursive=True)
                     if "serve" in p.cmdline() and "queue" in p.cmdline()]
        cmd = server.cmdline()
        namespace = cmd[cmd.index("--namespace") + 1]
        assert delete_namespace(amqp_url, namespace)  # what a colliding run used to do
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 1, err + out
    (run_dir,) = results.iterdir()
    meta = json.loads((run_dir / "run.json").read_text())
    (target,) = meta["targets"]
    assert target["namespace"] == namespace
    assert target["status"] == "failed", target
    assert "lost the broker" in target["error"] and "cancelled by the broker" in target["error"]
    assert target["saturated"] is False and target["measured_s"] < 30
    assert "failed: queue r1" in out and "(saturated)" not in out
    assert meta["broker"]["shared"] is not meta["broker"]["private"]
    assert meta["broker"]["url"] == redact_text(amqp_url)
    shared_warning = any("shared broker" in w for w in meta["warnings"])
    assert shared_warning is meta["broker"]["shared"]
    assert "broker lost" in (run_dir / target["log"]).read_text()


def test_an_slo_breach_exits_3_and_names_it(tmp_path):
    """[slo] is checked on every completed target run: one objective that cannot hold (p50
    under a microsecond) and one that must (errors under 100 %), so the exit code, the line
    and run.json's verdicts each come from a real measurement."""
    scenario = tmp_path / "slo.toml"
    scenario.write_text(tiny(tmp_path, "1s").read_text()
                        + '\n[slo]\nall = "p50 < 0.001ms, errors < 100%"\n')
    results = tmp_path / "results"
    proc = subprocess.run([COMMBENCH, "run", str(scenario), "--targets", "rest",
                           "--results-dir", str(results)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    (run_dir,) = results.iterdir()
    meta = json.loads((run_dir / "run.json").read_text())
    verdicts = {v["objective"]: v for v in meta["slo"]}
    assert set(verdicts) == {"p50 < 0.001ms", "errors < 100%"}
    assert verdicts["p50 < 0.001ms"]["held"] is False and verdicts["errors < 100%"]["held"]
    p50 = verdicts["p50 < 0.001ms"]["value"]
    summary = {r["operation"]: r for r in csv.DictReader(open(run_dir / "summary.csv"))}
    assert float(summary["all"]["latency_p50_ms"]) == pytest.approx(p50, rel=1e-3)
    assert "slo breached: rest r1 all: p50 < 0.001ms does not hold (measured" in \
        " ".join(proc.stdout.split())
    assert meta["scenario"]["slo"] == {"all": "p50 < 0.001ms, errors < 100%"}


def test_the_summary_table_takes_a_row_measured_for_no_time():
    """A target run that failed before its window began has no rate (None): the table
    shows a dash, it does not raise (a run once ended in a traceback there)."""
    from harness.run.progress import summary_table

    row = {"target": "rest", "repetition": 1, "operation": "all", "count": 0, "errors": 0,
           "throughput_rps": None, "latency_p50_ms": None, "latency_p99_ms": None,
           "latency_p999_ms": None, "latency_max_ms": None, "service_p99_ms": None}
    table = summary_table([row])
    assert table.row_count == 1 and list(table.columns[5].cells) == ["–"]
