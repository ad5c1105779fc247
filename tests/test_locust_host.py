"""Where locust's users go. The Host field of the web UI, driven over HTTP like a browser:
left empty, the test runs against the target `commbench locust` started; a host that is no
target of the transport stops the test with one logged line, not a traceback per task. And
`--url NAME=URL` / `--pid NAME=PID`, taken as `commbench run` takes them."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness.stage.launcher import Launcher
from reports.loader import load_run
from targets.core.seed import SeedSpec
from targets.serving import ServeConfig
from tests.test_locust import (  # noqa: F401 (fixtures)
    ROOT,
    commbench_locust,
    env_with,
    free_port,
    http,
    locust_json,
    mark,
    poll,
    run_folders,
    scenario,
    stats_by_name,
)


@pytest.mark.slow
def test_an_empty_host_means_the_started_target_and_a_bad_one_stops_the_test(
        tmp_path: Path, scenario: Path, mark: str) -> None:  # noqa: F811
    results, port, log = tmp_path / "results", free_port(), tmp_path / "log"
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        commbench_locust(scenario, results, "--target", "grpc", "--web", "--web-port",
                         str(port)),
        env=env_with(mark), stdout=subprocess.DEVNULL, stderr=open(log, "wb"), cwd=ROOT,
        start_new_session=True)

    def state(wanted: str) -> dict[str, Any] | None:
        s = http(base + "/stats/requests")
        return s if s["state"] == wanted else None

    try:
        poll("the web UI", lambda: http(base + "/"), 90, proc)
        # The Host field emptied: the target this command started is used.
        assert http(base + "/swarm", {"user_count": 4, "spawn_rate": 4, "host": ""})["success"]

        def every_operation_seen() -> dict[str, Any] | None:
            s = http(base + "/stats/requests")
            names = stats_by_name(s)
            ok = all(names.get(op, {}).get("num_requests", 0) > 0 for op in ("get", "list"))
            return s if ok else None

        running = poll("requests against the started target", every_operation_seen, 30, proc)
        assert running["fail_ratio"] == 0
        assert http(base + "/stop", {})["success"] is True
        poll("the first test to stop", lambda: state("stopped"), 30, proc)
        (first,) = poll("the first result folder", lambda: run_folders(results), 30, proc)

        # A host that is no gRPC target: one line, and the test stops by itself.
        bad = "http://127.0.0.1:1/"
        assert http(base + "/swarm", {"user_count": 4, "spawn_rate": 4, "host": bad})["success"]
        poll("the refusal in the log", lambda: "cannot be used" in log.read_text(), 30, proc)
        poll("the second test to stop by itself", lambda: state("stopped"), 30, proc)
        folders = poll("the second result folder",
                       lambda: [f for f in run_folders(results) if f != first], 30, proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(60) == 130
    text = log.read_text()
    # locust's log has one line of it; the command repeats it once among the run's warnings
    refusals = [line for line in text.splitlines() if "cannot be used" in line]
    assert [line for line in refusals if "/ERROR/commbench" in line] == refusals[:1]
    assert len(refusals) == 2 and refusals[1].startswith("commbench: warning: host"), refusals
    assert f"host {bad!r} cannot be used for grpc: " in refusals[0]
    assert "the test was stopped" in refusals[0]
    assert "Traceback" not in text, text[-3000:]

    staged = load_run(first).context["targets"][0]
    assert staged["url"].startswith("127.0.0.1:") or staged["url"].startswith("grpc://"), staged
    assert staged["measured_by_url"] is False and staged["server"] == "grpcio"
    refused = load_run(folders[0])
    assert refused.context["targets"][0]["url"] == bad
    assert any("cannot be used for grpc" in w for w in refused.context["warnings"])


@pytest.mark.slow
def test_url_and_pid_as_run_takes_them(tmp_path: Path, scenario: Path, mark: str,  # noqa: F811
                                       launcher: Launcher) -> None:
    # the scenario's data set (20 users × 5 orders), as an outside service would load it
    outside = launcher.start("rest", ServeConfig(seed=SeedSpec(20, 5)), name="outside-rest")
    results, stats = tmp_path / "results", tmp_path / "stats"
    r = subprocess.run(
        commbench_locust(scenario, results, "--target", "rest", "--headless", "-u", "4",
                         "-t", "3s", "--url", f"rest={outside.url}", "--pid",
                         f"rest={outside.pid}", "--", "--json-file", str(stats)),
        env=env_with(mark), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert locust_json(stats.with_suffix(".json"))["get"]["num_requests"] > 0
    (folder,) = run_folders(results)
    run = load_run(folder)
    (target,) = run.context["targets"]
    assert target["url"] == outside.url and target["measured_by_url"] is True
    assert target["pids"] == [outside.pid] and target["cpu"].startswith("measured: ")
    assert run.summary.set_index("operation").loc["all", "cpu_us_per_request"] > 0
    assert outside.alive()

    r = subprocess.run(commbench_locust(scenario, results, "--target", "rest", "--headless",
                                        "--url", f"grpc={outside.url}"),
                       env=env_with(mark), capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.strip() == (
        "commbench: --url names 'grpc', which is not the --target (rest)"), r.stderr
