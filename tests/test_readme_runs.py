"""The README's statements about a run ("What the numbers mean", "What makes the comparison
fair"), each proven on a real `commbench run`: real servers, the suite's broker, real
generator processes. Windows are short (1-3 s) to keep the suite's time down; no assertion
depends on the machine's speed.

tests/README.md maps each statement to its test."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psutil
import pytest

from harness.stage.launcher import Launcher
from targets.core.seed import SeedSpec
from targets.serving import ServeConfig
from tests.procs import read_until

pytestmark = pytest.mark.slow

COMMBENCH = str(Path(sys.executable).parent / "commbench")
ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_S = 240  # a whole short run; generous for a busy 2-core machine

SCENARIO = """
name = "{name}"
description = "a short run for the README's statements"
targets = ["rest"]
duration = "{duration}"
warmup = "500ms"

[data]
users = 20
orders_per_user = 5
store = "{store}"

[load]
rate = {rate}
arrival = "uniform"
in_flight = {in_flight}
timeout = "10s"

[operations]
{operations}
"""


def scenario(tmp_path: Path, name: str, *, duration: str = "1s", rate: int = 60,
             in_flight: int = 64, store: str = "memory",
             operations: str = "get = 6\nlist = 2\ncreate = 2") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(SCENARIO.format(name=name, duration=duration, rate=rate,
                                    in_flight=in_flight, store=store, operations=operations))
    return path


def commbench_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COMMBENCH, "run", *args], capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, cwd=ROOT)


def the_run(results: Path) -> tuple[Path, dict]:
    (run_dir,) = [d for d in results.iterdir() if not d.name.startswith(".")]
    return run_dir, json.loads((run_dir / "run.json").read_text())


def hlog_start(path: Path) -> float:
    """The window's start an .hlog file states (#[StartTime: seconds since the epoch ...])."""
    m = re.search(r"^#\[StartTime: ([\d.]+)", path.read_text(), re.M)
    assert m, path
    return float(m[1])


# ---- What the numbers mean ---------------------------------------------------------------

def test_a_generator_that_falls_behind_is_flagged_on_screen_in_run_json_and_report(
        tmp_path: Path) -> None:
    """"Saturated generator": one request in flight at 200/s against targets slowed by 20 ms
    a request (the fault switch): at most 50/s can go out, so under 99 % of the intended
    requests leave in time, whatever the machine."""
    results = tmp_path / "results"
    p = commbench_run(str(scenario(tmp_path, "behind", rate=200, in_flight=1,
                                   operations="get = 1")),
                      "--targets", "rest,grpc", "--fault", "order:delay=20ms@0s+1s",
                      "--report", "--results-dir", str(results))
    assert p.returncode == 0, p.stdout + p.stderr
    run_dir, meta = the_run(results)
    # on screen: each target's end line, the warning, the summary's generator column
    for t in ("rest", "grpc"):
        assert f"{t} r1: ok (saturated)" in p.stdout, p.stdout
        assert re.search(rf"warning: generator saturated on {t} r1: achieved (\d+)% of the "
                         r"intended rate", p.stdout)
    achieved = [int(m) for m in re.findall(r"achieved (\d+)% of the intended", p.stdout)]
    assert len(achieved) == 2 and all(a < 99 for a in achieved), achieved
    # in run.json and summary.csv
    assert [(t["name"], t["saturated"]) for t in meta["targets"]] == [("rest", True),
                                                                      ("grpc", True)]
    assert sum(w.startswith("generator saturated on ") for w in meta["warnings"]) == 2
    s = pd.read_csv(run_dir / "summary.csv")
    assert s.loc[s["operation"] == "all", "saturated"].astype(bool).all()
    # in the report (run --report prints its path): the warnings, and throughput refused
    assert f"report: {run_dir / 'report.html'}" in p.stdout
    page = (run_dir / "report.html").read_text()
    for t in ("rest", "grpc"):
        assert f"generator saturated on {t} r1: achieved" in page
    assert ("Throughput is not compared: the generator fell behind on REST, gRPC, so "
            "throughput there measures the generator, not the target.") in page
    assert "The generator kept to the offered" not in page


def test_schedule_lag_alone_flags_a_generator_that_kept_the_rate(tmp_path: Path) -> None:
    """"... or the schedule lag p99 exceeds 10 ms": one request in flight at 50/s (one due
    every 20 ms) against a target delayed 30 ms for half a second. About 25 requests wait
    for the slot, each 10 ms longer than the one before, so far more than 1 % of the sends
    lag over 10 ms (load only lengthens the delay). The backlog, a dozen requests at normal
    speed, is gone long before the window ends, so every intended request still leaves
    within it: the lag alone flags the run."""
    results = tmp_path / "results"
    p = commbench_run(str(scenario(tmp_path, "lag", duration="3s", rate=50, in_flight=1,
                                   operations="get = 1")),
                      "--fault", "order:delay=30ms@1s+500ms", "--results-dir", str(results))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "rest r1: ok (saturated)" in p.stdout, p.stdout
    m = re.search(r"warning: generator saturated on rest r1: achieved (\d+)% of the intended "
                  r"rate, schedule lag p99 ([\d.]+) ms", p.stdout)
    assert m and int(m[1]) >= 99 and float(m[2]) > 10, p.stdout
    run_dir, meta = the_run(results)
    assert meta["targets"][0]["saturated"] is True
    s = pd.read_csv(run_dir / "summary.csv").set_index("operation")
    assert bool(s.loc["all", "saturated"]) and s.loc["all", "achieved_rps"] >= \
        0.99 * s.loc["all", "intended_rps"]
    t = pd.read_csv(run_dir / "timeline.csv")
    assert (t.loc[t["operation"] == "all", "schedule_lag_p99_ms"] > 10).any()


def test_demo_run_measures_the_queue_with_both_creation_figures_and_the_broker_cpu(
        tmp_path: Path, amqp_url: str) -> None:
    """`make demo` is `commbench run scenarios/quick.toml --report`: here with 1 s windows,
    every transport, the queue included. The queue's creations have both figures, accepted
    before completed for every request (so at every percentile), and its CPU per request
    includes the broker's: more than the same server measured alone (by --pid) in a
    second run."""
    results = tmp_path / "results"
    p = commbench_run("scenarios/quick.toml", "--duration", "2s", "--amqp-url", amqp_url,
                      "--report", "--results-dir", str(results))
    assert p.returncode == 0, p.stdout + p.stderr
    run_dir, meta = the_run(results)
    assert [t["name"] for t in meta["targets"]] == ["rest", "grpc", "queue"]
    assert all(t["status"] == "ok" for t in meta["targets"]), meta["targets"]
    assert (run_dir / "report.html").exists() and f"report: {run_dir}" in p.stdout
    s = pd.read_csv(run_dir / "summary.csv").set_index(["target", "operation"])
    assert set(s.loc["queue"].index) == {"get", "list", "create", "create_accepted", "all"}
    assert "create_accepted" not in s.loc["rest"].index  # only the queue has the moment
    acc, done = s.loc[("queue", "create_accepted")], s.loc[("queue", "create")]
    assert acc["count"] == done["count"] > 0 and acc["errors"] == done["errors"] == 0
    for q in ("p50", "p90", "p99", "max"):
        # each accept precedes its completion; HdrHistogram keeps 3 significant digits
        assert acc[f"latency_{q}_ms"] <= done[f"latency_{q}_ms"] * 1.001, q
    with_broker = s.loc[("queue", "all"), "cpu_us_per_request"]
    assert with_broker > 0

    # The same queue server reached by URL, probed by --pid alone: the broker left out.
    ns = f"cbtest-alone-{os.getpid()}"
    with Launcher(tmp_path / "logs") as launcher:
        server = launcher.start("queue", ServeConfig(
            amqp_url=amqp_url, namespace=ns, seed=SeedSpec(users=100, orders_per_user=10,
                                                           seed=1)))
        alone = commbench_run("scenarios/quick.toml", "--targets", "queue", "--duration", "2s",
                              "--url", f"queue={amqp_url}?namespace={ns}",
                              "--pid", f"queue={server.pid}",
                              "--results-dir", str(tmp_path / "alone"))
    assert alone.returncode == 0, alone.stdout + alone.stderr
    alone_dir, _ = the_run(tmp_path / "alone")
    a = pd.read_csv(alone_dir / "summary.csv").set_index(["target", "operation"])
    server_only = a.loc[("queue", "all"), "cpu_us_per_request"]
    # Persistent messages with confirms cost the broker at least a third of what the server
    # spends (about as much, measured); CPU time per request, not wall time, so a busy
    # machine moves both alike. The margin is generous.
    assert with_broker > 1.3 * server_only, (with_broker, server_only)


def test_order_creation_persists_on_sqlite_through_every_server(tmp_path: Path,
                                                                amqp_url: str) -> None:
    """"The order-creation scenario uses the SQLite store (WAL) so every transport also
    persists the order itself": after the run, each target's database holds one row per
    creation the generator saw succeed, counted in the database."""
    results = tmp_path / "results"
    targets = ["rest", "rest@granian", "grpc", "queue"]
    p = commbench_run(str(scenario(tmp_path, "persist", store="sqlite",
                                   operations="get = 1\ncreate = 3")),
                      "--targets", ",".join(targets), "--amqp-url", amqp_url,
                      "--results-dir", str(results))
    assert p.returncode == 0, p.stdout + p.stderr
    run_dir, meta = the_run(results)
    timeline = pd.read_csv(run_dir / "timeline.csv")
    prefix = f"{meta['run_id'][:15]}-r1"
    for t in meta["targets"]:
        name = t["name"]
        db = run_dir / "data" / f"{name}-r1.sqlite"
        assert db.exists(), sorted((run_dir / "data").iterdir())
        with sqlite3.connect(db) as conn:
            (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
            (rows,) = conn.execute("SELECT COUNT(*) FROM orders WHERE request_id LIKE ?",
                                   (prefix + "%",)).fetchone()
        assert mode == "wal"
        creates = timeline[(timeline["target"] == name) & (timeline["operation"] == "create")]
        ok = int(creates["count"].sum() - creates["errors"].sum())  # warm-up and drain too
        assert ok > 0 and creates["errors"].sum() == 0, name
        assert rows == ok, (name, rows, ok)


# ---- What makes the comparison fair ------------------------------------------------------

def test_run_refuses_to_measure_a_target_that_fails_conformance(tmp_path: Path,
                                                                launcher: Launcher) -> None:
    """"A run refuses to measure a target that fails it": a REST server seeded with other
    data answers every request, wrongly; `run` reports it failed and measures nothing."""
    wrong = launcher.start("rest", ServeConfig(seed=SeedSpec(users=20, orders_per_user=5,
                                                             seed=99)))
    results = tmp_path / "results"
    p = commbench_run(str(scenario(tmp_path, "gate")), "--url", f"rest={wrong.url}",
                      "--results-dir", str(results))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "failed: rest r1" in p.stdout and "load on rest" not in p.stdout
    run_dir, meta = the_run(results)
    (t,) = meta["targets"]
    assert t["status"] == "failed" and t["measured_s"] == 0.0
    assert re.match(r"conformance gate: \d+ of \d+ checks failed: ", t["error"]), t["error"]
    assert list((run_dir / "histograms").glob("rest-*")) == []
    s = pd.read_csv(run_dir / "summary.csv")
    assert s[(s["target"] == "rest") & (s["count"] > 0)].empty


def test_target_order_rotates_between_repetitions(tmp_path: Path) -> None:
    """"With repetitions the order of targets rotates": when each target run started, from
    its own histogram log, and run.json's rows in that order."""
    results = tmp_path / "results"
    p = commbench_run(str(scenario(tmp_path, "rotate")), "--targets", "rest,grpc",
                      "--repetitions", "2", "--results-dir", str(results))
    assert p.returncode == 0, p.stdout + p.stderr
    run_dir, meta = the_run(results)
    started = sorted((hlog_start(run_dir / "histograms" / f"{t}-r{r}-latency.hlog"), t, r)
                     for t in ("rest", "grpc") for r in (1, 2))
    assert [(t, r) for _, t, r in started] == [("rest", 1), ("grpc", 1), ("grpc", 2),
                                               ("rest", 2)]
    assert [(t["name"], t["repetition"]) for t in meta["targets"]] == \
        [(t, r) for _, t, r in started]


def _cpus(pid: int) -> str:
    """The CPUs a process may run on, as the kernel states it."""
    status = Path(f"/proc/{pid}/status").read_text()
    return re.search(r"^Cpus_allowed_list:\s*(\S+)", status, re.M)[1]  # type: ignore[index]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 or not {0, 1} <= os.sched_getaffinity(0),
                    reason="pinning apart needs CPUs 0 and 1")
def test_pinning_and_concurrent_targets(tmp_path: Path) -> None:
    """"--target-cpus and --load-cpus pin targets and generator, and run.json records the
    pinning"; "--concurrent measures them together". Read from /proc while the load runs:
    both servers on CPU 1, commbench and its generator processes on CPU 0; afterwards both
    targets' windows start at the same instant."""
    results = tmp_path / "results"
    proc = subprocess.Popen(
        [COMMBENCH, "run", str(scenario(tmp_path, "pinned", duration="3s")), "--targets",
         "rest,grpc", "--concurrent", "--target-cpus", "1", "--load-cpus", "0",
         "--results-dir", str(results)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        cwd=ROOT)
    try:
        read_until(proc, "load on", 90)
        tree = psutil.Process(proc.pid).children(recursive=True)
        servers = [c for c in tree if "serve" in c.cmdline()]
        load = [c for c in tree if c not in servers and c.ppid() == proc.pid]
        seen = {"servers": sorted(_cpus(c.pid) for c in servers),
                "commbench": _cpus(proc.pid),
                "load": sorted(_cpus(c.pid) for c in load)}
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out + err
    assert seen["servers"] == ["1", "1"], seen  # REST and gRPC, both up at once
    assert seen["commbench"] == "0" and seen["load"] and set(seen["load"]) == {"0"}, seen
    run_dir, meta = the_run(results)
    assert meta["environment"]["pinning"] == {"target_cpus": [1], "load_cpus": [0]}
    assert meta["arguments"]["concurrent"] is True
    rest, grpc = (hlog_start(run_dir / "histograms" / f"{t}-r1-latency.hlog")
                  for t in ("rest", "grpc"))
    assert abs(rest - grpc) < 0.01  # one common start, not one after the other
