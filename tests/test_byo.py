"""Bring your own service: `commbench run --url` measures a target commbench did not start
(here a separately started `commbench serve`, as any outside implementation would be), after
the same conformance gate, and marks it measured by URL in run.json and the report: no CPU
or memory figures unless `--pid` names its process, no broker started and no namespace
deleted for it."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.stage.broker import delete_namespace
from harness.stage.launcher import Launcher, Service
from harness.stage.reach import CPU_NOT_MEASURED
from targets.core.model import Order
from targets.core.seed import SeedSpec, seed_orders
from targets.registry import get_transport
from targets.serving import ServeConfig
from tests.conftest import run

COMMBENCH = str(Path(sys.executable).parent / "commbench")
SEED = SeedSpec(users=20, orders_per_user=5, seed=1)
TINY = """
name = "tiny"
description = "a tiny run against a target started elsewhere"
targets = ["rest"]
duration = "2s"
warmup = "500ms"

[data]
users = 20
orders_per_user = 5
seed = 1

[load]
rate = 100
timeout = "5s"

[operations]
get = 6
list = 2
create = 2
"""


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture
def namespace(amqp_url: str) -> Iterator[str]:
    ns = f"byo-{uuid.uuid4().hex[:8]}"
    yield ns
    delete_namespace(amqp_url, ns)


def serve(launcher: Launcher, transport: str, amqp_url: str, namespace: str) -> Service:
    """A target started outside `commbench run`, with the scenario's seed."""
    return launcher.start(transport, ServeConfig(amqp_url=amqp_url, namespace=namespace,
                                                 seed=SEED), name=f"outside-{transport}")


def commbench_run(scenario: Path, results: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COMMBENCH, "run", str(scenario), "--results-dir", str(results), *args],
                          capture_output=True, text=True, timeout=180)


def all_rows(run_dir: Path, name: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The summary's `all` row of the target and its measured timeline `all` rows."""
    with open(run_dir / "summary.csv", newline="") as f:
        (summary,) = [r for r in csv.DictReader(f) if r["operation"] == "all"
                      and r["target"] == name]
    with open(run_dir / "timeline.csv", newline="") as f:
        timeline = [r for r in csv.DictReader(f) if r["operation"] == "all"
                    and r["target"] == name and int(r["second"]) >= 0]
    return summary, timeline


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["rest", "grpc", "queue"])
def test_run_by_url_measures_a_target_started_elsewhere(
        transport: str, tmp_path: Path, scenario: Path, launcher: Launcher, amqp_url: str,
        namespace: str) -> None:
    outside = serve(launcher, transport, amqp_url, namespace)
    results = tmp_path / "results"
    proc = commbench_run(scenario, results, "--targets", transport,
                         "--url", f"{transport}={outside.url}", "--amqp-url", amqp_url,
                         "--report")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = results.iterdir()
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "complete"
    (target,) = meta["targets"]
    assert target["status"] == "ok" and target["conformance"] == "12/12 checks passed"
    assert target["measured_by_url"] is True and target["pids"] is None
    assert target["cpu"] == CPU_NOT_MEASURED.format(name=transport)
    assert target["url"] == outside.url and target["log"] is None
    assert target["namespace"] is None  # none of ours: nothing to delete
    assert meta["broker"] is None  # no broker found or started for a target reached by URL
    assert meta["arguments"]["url"] == {transport: outside.url}
    assert any("measured by URL" in w and f"--pid {transport}=PID" in w
               for w in meta["warnings"])
    assert not (run_dir / "logs").exists() or not any((run_dir / "logs").iterdir())

    summary, timeline = all_rows(run_dir, transport)
    assert int(summary["count"]) > 50 and int(summary["errors"]) == 0
    assert summary["cpu_us_per_request"] == "" and summary["rss_mb_max"] == ""
    assert float(summary["client_cpu_us_per_request"]) > 0  # the generator is ours: measured
    assert timeline and all(r["cpu_percent"] == "" and r["rss_mb"] == "" for r in timeline)

    page = (run_dir / "report.html").read_text()
    assert f'<tr><td>{transport}<span class="tag by-url"' in page
    assert f"by URL ({outside.url}); CPU {CPU_NOT_MEASURED.format(name=transport)}" in page

    # The target is still up and still answers: nothing of it was stopped or deleted (for the
    # queue: its namespace, whose deletion would have made the server exit).
    assert outside.alive()

    async def first_order() -> Order:
        client = await get_transport(transport).client_factory()(outside.url, timeout=10)
        try:
            return await client.get_order(1)
        finally:
            await client.close()

    assert run(first_order()) == seed_orders(SEED)[0]


@pytest.mark.slow
def test_run_by_url_with_pid_measures_cpu_and_memory(tmp_path: Path, scenario: Path,
                                                     launcher: Launcher) -> None:
    outside = serve(launcher, "rest", "", "commbench")
    results = tmp_path / "results"
    proc = commbench_run(scenario, results, "--url", f"rest={outside.url}",
                         "--pid", f"rest={outside.pid}", "--report")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = results.iterdir()
    (target,) = json.loads((run_dir / "run.json").read_text())["targets"]
    assert target["measured_by_url"] is True and target["pids"] == [outside.pid]
    assert target["cpu"] == f"measured: the process tree of PID {outside.pid} (--pid)"
    summary, timeline = all_rows(run_dir, "rest")
    assert float(summary["cpu_us_per_request"]) > 0 and float(summary["rss_mb_max"]) > 10
    assert all(r["cpu_percent"] != "" for r in timeline)
    page = (run_dir / "report.html").read_text()
    assert '<tr><td>rest<span class="tag by-url" title="CPU measured: the process tree' in page


def test_a_url_that_does_not_answer_fails_the_gate(tmp_path: Path, scenario: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    results = tmp_path / "results"
    proc = commbench_run(scenario, results, "--url", f"rest=http://127.0.0.1:{port}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (run_dir,) = results.iterdir()
    (target,) = json.loads((run_dir / "run.json").read_text())["targets"]
    assert target["status"] == "failed" and "conformance" in target["error"]
    assert target["measured_by_url"] is True


@pytest.mark.parametrize("args, message", [
    (["--pid", "rest=1"], "--pid rest: commbench starts rest itself and probes its processes; "
                          "--pid goes with --url rest=URL"),
    (["--url", "rest=http://127.0.0.1:1", "--pid", "rest=abc"],
     "--pid takes NAME=PID or NAME=PID,PID…, got rest=abc"),
    (["--url", "rest=http://127.0.0.1:1", "--pid", "rest=2147483646"],
     "--pid rest=2147483646: no such process"),
    (["--url", "grpc=127.0.0.1:1"], "--url names 'grpc', which is not among the targets "
                                    "(rest:aiohttp)"),
    (["--targets", "rest@granian", "--url", "rest=http://127.0.0.1:1"],
     "--url rest: a target reached by URL runs whatever server answers there; drop @granian "
     "from rest-granian"),
    (["--url", "soap=http://x"], "unknown target 'soap'"),
    (["--url", "rest"], "--url takes NAME=VALUE, got 'rest'"),
])
def test_bad_url_and_pid_options_are_one_line(tmp_path: Path, scenario: Path,
                                              args: list[str], message: str) -> None:
    proc = commbench_run(scenario, tmp_path / "results", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_seed_writes_the_orders_an_outside_implementation_loads(tmp_path: Path,
                                                                scenario: Path) -> None:
    """`commbench seed`: every field of the seed orders, ids and request ids included, the
    same as `commbench serve` loads; from options or from a scenario's [data]."""
    def seed(*args: str) -> str:
        proc = subprocess.run([COMMBENCH, "seed", *args], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    spec = SeedSpec(users=3, orders_per_user=2, seed=7)
    lines = seed("--users", "3", "--orders-per-user", "2", "--seed", "7").splitlines()
    want = [{**o.to_dict(), "request_id": o.request_id} for o in seed_orders(spec)]
    assert [json.loads(line) for line in lines] == want
    assert [Order.from_dict(json.loads(line)) for line in lines] == seed_orders(spec)
    assert json.loads(seed("--users", "3", "--orders-per-user", "2", "--seed", "7",
                           "--format", "json")) == want
    out = tmp_path / "seed.jsonl"
    assert seed("--scenario", str(scenario), "--out", str(out)) == ""
    assert len(out.read_text().splitlines()) == SEED.total
    assert json.loads(out.read_text().splitlines()[-1])["id"] == SEED.total
    from targets.core.model import CATALOGUE

    assert json.loads(seed("--catalogue")) == CATALOGUE
