"""Server variants as rows: `rest@granian` is the same FastAPI app on another HTTP server, named
by its own spec, passing the same conformance suite and reported as a row of its own."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.scenario import TargetRef, parse_scenario, parse_target, scenario_schema
from harness.stage.conformance import CHECKS
from harness.stage.launcher import Launcher, serve_command
from harness.stage.verify import column_name
from targets.registry import TRANSPORTS
from targets.serving import ServeConfig

COMMBENCH = str(Path(sys.executable).parent / "commbench")
TINY = """
name = "tiny"
description = "REST with another client and on another server, briefly"
targets = ["rest", "rest:httpx", "rest@granian"]
duration = "2s"
warmup = "500ms"

[data]
users = 20
orders_per_user = 5

[load]
rate = 100
timeout = "5s"

[operations]
get = 6
list = 2
create = 2
"""


@pytest.mark.parametrize("spec, ref, name", [
    ("rest", TargetRef("rest", "aiohttp"), "rest"),
    ("rest:httpx", TargetRef("rest", "httpx"), "rest-httpx"),
    ("rest@uvicorn", TargetRef("rest", "aiohttp"), "rest"),  # the default server: same row
    ("rest@granian", TargetRef("rest", "aiohttp", "granian"), "rest-granian"),
    ("rest:httpx@granian", TargetRef("rest", "httpx", "granian"), "rest-httpx-granian"),
    ("grpc", TargetRef("grpc", "grpcio"), "grpc"),
])
def test_target_specs_and_row_names(spec: str, ref: TargetRef, name: str) -> None:
    assert parse_target(spec) == ref and ref.name == name
    assert parse_target(ref.spec) == ref  # run.json's spec reads back as the same target


@pytest.mark.parametrize("spec, message", [
    ("grpc@granian", "grpc has no server 'granian'; choose one of: grpcio"),
    ("rest@", "rest has no server ''; choose one of: uvicorn, granian"),
    ("rest:curl@granian", "rest has no client 'curl'; choose one of: aiohttp, httpx, probe"),
])
def test_bad_server_variants_name_the_choices(spec: str, message: str) -> None:
    with pytest.raises(KeyError) as err:
        parse_target(spec)
    assert err.value.args[0] == message


def test_a_scenario_may_name_server_variants() -> None:
    raw = {"name": "t", "targets": ["rest@granian", "rest:httpx@granian", "rest"],
           "duration": "2s", "load": {"rate": 10}, "operations": {"get": 1}}
    sc = parse_scenario(raw, "x.toml")
    assert [t.name for t in sc.targets] == ["rest-granian", "rest-httpx-granian", "rest"]
    assert sc.to_dict()["targets"] == ["rest:aiohttp@granian", "rest:httpx@granian",
                                       "rest:aiohttp"]
    enum = scenario_schema()["properties"]["targets"]["items"]["enum"]
    assert {"rest@granian", "rest:httpx@granian", "grpc", "queue:aio-pika"} <= set(enum)
    assert "grpc@granian" not in enum


def test_the_launcher_passes_the_server_variant() -> None:
    config = ServeConfig()
    assert "--server" not in serve_command("rest", config)
    cmd = serve_command("rest", config, "granian")
    assert cmd[cmd.index("--server") + 1] == "granian"
    assert column_name("rest", "httpx", "granian") == "rest-httpx-granian"


def test_granian_serves_the_same_app(launcher: Launcher) -> None:
    """The ready line comes once granian answers; SIGTERM ends it cleanly (exit code 0)."""
    service = launcher.start("rest", ServeConfig(), server="granian")
    import urllib.request

    with urllib.request.urlopen(f"{service.url}/orders/1", timeout=10) as r:
        assert r.headers["server"] == "granian"
        assert json.loads(r.read())["id"] == 1
    with urllib.request.urlopen(f"{service.url}/openapi.json", timeout=10) as r:
        assert json.loads(r.read())["openapi"].startswith("3.1")
    assert service.stop() == 0


def test_verify_passes_on_the_granian_variant(tmp_path: Path) -> None:
    proc = subprocess.run([COMMBENCH, "verify", "--targets", "rest@granian", "--logs",
                           str(tmp_path)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rest-granian" in proc.stdout and "rest-httpx-granian" in proc.stdout
    assert "rest-probe-granian" in proc.stdout  # every client variant, the probe too
    checks = (len(CHECKS) + 1) * len(TRANSPORTS["rest"].clients)  # + "reach the target"
    assert f"conformance: all {checks} checks passed" in proc.stdout


def test_a_run_reports_client_and_server_variants_as_rows_of_their_own(tmp_path: Path) -> None:
    """The granian server variant and the httpx client variant ("Client cost counts:
    rest-httpx is its own row") each measured as a row of its own, in run.json, summary.csv
    (the client's CPU per request included) and the report's table."""
    scenario, results = tmp_path / "tiny.toml", tmp_path / "results"
    scenario.write_text(TINY)
    proc = subprocess.run([COMMBENCH, "run", str(scenario), "--results-dir", str(results),
                           "--report"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = results.iterdir()
    meta = json.loads((run_dir / "run.json").read_text())
    assert [(t["name"], t["client"], t["server"], t["status"]) for t in meta["targets"]] == [
        ("rest", "aiohttp", "uvicorn", "ok"), ("rest-httpx", "httpx", "uvicorn", "ok"),
        ("rest-granian", "aiohttp", "granian", "ok")]
    with open(run_dir / "summary.csv", newline="") as f:
        rows = {r["target"]: r for r in csv.DictReader(f) if r["operation"] == "all"}
    assert set(rows) == {"rest", "rest-httpx", "rest-granian"}
    assert rows["rest-httpx"]["client"] == "httpx"
    # why the client is selectable: httpx spends more CPU per request than aiohttp (about
    # 2.5 times, measured on 2 cores); an ordering of CPU times, not a speed
    assert float(rows["rest-httpx"]["client_cpu_us_per_request"]) > \
        float(rows["rest"]["client_cpu_us_per_request"])
    assert all(float(r["cpu_us_per_request"]) > 0 and float(r["client_cpu_us_per_request"]) > 0
               and int(r["errors"]) == 0 for r in rows.values())
    page = (run_dir / "report.html").read_text()
    assert "<tr><td>rest-granian</td>" in page and "<td>granian</td>" in page
    assert "<tr><td>rest-httpx</td>" in page
