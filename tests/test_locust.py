"""`commbench locust`: the project's async clients under locust, through the asyncio bridge.

Real parts: targets started by the command itself, locust as a real subprocess (headless,
web UI driven over HTTP like a browser, master + worker), Chromium rendering the web UI.
Every test bounds its processes in time and checks, by an environment marker every
descendant inherits, that none outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import psutil
import pytest
from hdrh.histogram import HdrHistogram

from harness.load.recorder import ACCEPTED, NS, SecondRecord
from harness.locust.command import LocustOptions, locust_command
from harness.locust.node import LocustConfig, NodeRecorder, from_wire, to_wire
from harness.locust.results import (
    CLOSED_LOOP_WARNING,
    ResultCollector,
)
from harness.scenario import duration_option, load_scenario
from reports.loader import load_run
from tests.browser import CHROMIUM, FLAGS
from tests.procs import still_running

ROOT = Path(__file__).resolve().parent.parent
COMMBENCH = str(Path(sys.executable).parent / "commbench")
ARTIFACTS = ROOT / "test-artifacts"
MARK_ENV = "COMMBENCH_TEST_MARK"
# The web UI may load nothing from outside loopback.
CHROMIUM_FLAGS = [*FLAGS, "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
SCENARIO = """
name = "locust-tiny"
description = "a small mix for locust tests"
targets = ["rest"]
duration = "3s"
warmup = "0s"

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


# -- helpers ---------------------------------------------------------------------------------

@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "locust-tiny.toml"
    path.write_text(SCENARIO)
    return path


@pytest.fixture
def mark() -> Iterator[str]:
    """A marker in the environment of the command and of everything it starts; after the
    test no process may still carry it."""
    value = uuid.uuid4().hex
    yield value
    found = survivors(value)
    alive = still_running(found, timeout=10)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    assert not alive, f"processes outlived the test: {[p.pid for p in alive]}"


def survivors(mark: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if p.environ().get(MARK_ENV) == mark:
                out.append(p)
    return out


def env_with(mark: str) -> dict[str, str]:
    env = dict(os.environ, **{MARK_ENV: mark})
    env.pop("COMMBENCH_LOCUST", None)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def commbench_locust(scenario: Path, results: Path, *args: str) -> list[str]:
    return [COMMBENCH, "locust", str(scenario), "--results-dir", str(results), *args]


def run_folders(results: Path) -> list[Path]:
    return sorted(p for p in results.iterdir() if (p / "run.json").exists()
                  and not p.name.startswith("."))


def locust_json(path: Path) -> dict[str, dict[str, int]]:
    """locust's own --json-file statistics: name → requests and failures."""
    return {e["name"]: {"num_requests": e["num_requests"], "num_failures": e["num_failures"]}
            for e in json.loads(path.read_text())}


def summary_counts(folder: Path) -> dict[str, int]:
    run = load_run(folder)
    return {str(r.operation): int(r["count"]) for _, r in run.summary.iterrows()}


def http(url: str, data: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=timeout) as r:
        raw = r.read()
    with contextlib.suppress(ValueError):
        return json.loads(raw)
    return raw.decode()


def poll(what: str, check: Any, timeout: float, proc: subprocess.Popen[bytes] | None = None,
         interval: float = 0.2) -> Any:
    """Poll an observable (an HTTP answer, a folder) until `check()` returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            value = check()
            if value:
                return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the command exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)  # pacing of the poll of an external process, not a sync stand-in


def chromium(url: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    profile = tempfile.mkdtemp(prefix="commbench-chromium-")
    try:
        return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                               "--virtual-time-budget=5000", *extra, url],
                              capture_output=True, timeout=60, start_new_session=True)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def rendered_stats(dom: str) -> dict[str, tuple[int, int]]:
    """Locust's statistics table as Chromium rendered it: name → (# requests, # fails)."""
    out: dict[str, tuple[int, int]] = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", dom, re.S):
        cells = [re.sub(r"<[^>]+>", "", c).strip()
                 for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]
        if len(cells) > 3 and cells[2].isdigit():
            out[cells[1]] = (int(cells[2]), int(cells[3]))
    return out


def broker_objects(amqp_url: str, namespace: str) -> dict[str, bool]:
    """The namespace's queues and exchanges that still exist on the broker (passive
    declares: a missing one closes the channel with 404)."""
    import aio_pika
    from aiormq.exceptions import ChannelNotFoundEntity

    from targets.queue.topology import Names

    names = Names(namespace)

    async def check() -> dict[str, bool]:
        found: dict[str, bool] = {}
        connection = await aio_pika.connect(amqp_url, timeout=10)
        async with connection:
            for kind, name in [("queue", names.rpc), ("queue", names.commands),
                               ("queue", names.dead), ("exchange", names.events),
                               ("exchange", names.dlx)]:
                channel = await connection.channel()
                try:
                    if kind == "queue":
                        await channel.declare_queue(name, passive=True)
                    else:
                        await channel.get_exchange(name, ensure=True)
                    found[name] = True
                except ChannelNotFoundEntity:
                    continue
                finally:
                    with contextlib.suppress(Exception):
                        await channel.close()
        return found

    return asyncio.run(check())


def stats_by_name(stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in stats["stats"]}


def check_folder(folder: Path, transport: str, locust_counts: dict[str, dict[str, int]]) -> None:
    """The result folder is in the documented format and agrees with locust's counts."""
    run = load_run(folder)
    assert run.context["status"] == "complete", run.warnings
    assert run.context["generator"]["kind"] == "locust"
    assert CLOSED_LOOP_WARNING in run.context["warnings"]
    assert run.targets == [transport]
    counts = summary_counts(folder)
    for op in ("get", "list", "create"):
        assert counts[op] == locust_counts[op]["num_requests"] > 0, (op, counts, locust_counts)
        assert locust_counts[op]["num_failures"] == 0
        h = run.histogram(transport, op)
        assert h is not None and h.get_total_count() == counts[op]
    assert counts["all"] == sum(locust_counts[op]["num_requests"]
                                for op in ("get", "list", "create"))
    errors = run.summary.set_index("operation").loc["all", "errors"]
    assert errors == 0
    assert not run.timeline.empty and set(run.timeline["second"]) >= {0}


# -- pure parts -----------------------------------------------------------------------------

def test_a_second_survives_locusts_message_encoding() -> None:
    h = HdrHistogram(1, 3_600_000_000, 3)
    h.record_value(1234)
    rec = SecondRecord(second=3, hists={("get", "ok", "latency"): h.encode()},
                       errors={("get", "timeout"): 2}, intended=5, started=5, clamped=1)
    # locust's own wire format: msgpack, bin as bytes, tuples become lists
    wire = msgpack.loads(msgpack.dumps(to_wire(rec)), raw=False, strict_map_key=False)
    assert from_wire(wire) == rec


def test_node_recorder_buckets_by_second_and_counts_late_results() -> None:
    records: list[SecondRecord] = []
    node = NodeRecorder(records.append)
    t = 1_000 * NS
    node.begin(t, warmup_s=1.0)  # measured from t + 1 s; the warm-up is second -1
    node.request("get", None, 2_000_000, t + NS // 2)
    node.request("get", "timeout", 3_000_000, t + NS + NS // 2)
    node.request("create", None, 5_000_000, t + NS + 600_000_000, accepted_ns=1_000_000)
    node.tick(t + 3 * NS + 1)  # one second of slack: seconds -1 and 0 close
    assert [r.second for r in records] == [-1, 0]
    node.request("list", None, 1_000_000, t + NS + 100)  # completes in the closed second 0
    assert node.end() == {"requests": 4, "late": 1}
    by_second = {r.second: r for r in records}
    second0 = by_second[0]
    assert second0.errors == {("get", "timeout"): 1}
    assert HdrHistogram.decode(second0.hists[("get", "error", "latency")]).get_total_count() == 1
    accepted = HdrHistogram.decode(second0.hists[(ACCEPTED, "ok", "service")])
    assert 900 <= accepted.get_max_value() <= 1100  # µs
    assert ("list", "ok", "latency") in by_second[1].hists  # the late one, one second on


def test_collector_merges_two_workers_into_a_loadable_folder(tmp_path: Path,
                                                             scenario: Path) -> None:
    config = LocustConfig(scenario_file=str(scenario), transport="grpc", variant="grpcio",
                          results_dir=str(tmp_path / "results"), warmup_s=0.0)
    collector = ResultCollector(config, "grpc://127.0.0.1:1", "master")
    t = (time.time_ns() // NS - 10) * NS
    collector.begin(t, ["w1", "w2"])
    nodes = {}
    for name in ("w1", "w2"):
        node = nodes[name] = NodeRecorder(lambda rec, n=name: collector.add(n, from_wire(
            to_wire(rec))))
        node.begin(t, 0.0)
    for i in range(30):
        nodes["w1" if i % 3 else "w2"].request("get", None, 1_000_000 + i, t + (i + 1) * NS // 10)
    nodes["w2"].request("create", "http_503", 4_000_000, t + 2 * NS)
    collector.users(7)
    for name, node in nodes.items():
        collector.node_done(name, node.end())
    assert not collector.waiting_for
    folder = collector.finish(t + 4 * NS)
    assert folder is not None
    run = load_run(folder)
    counts = summary_counts(folder)
    assert counts == {"get": 30, "create": 1, "all": 31}
    assert run.context["generator"]["mode"] == "master"
    assert run.context["generator"]["processes"] == 2
    assert run.context["scenario"]["load"] == {**run.context["scenario"]["load"],
                                               "model": "closed", "users": 7}
    assert run.errors.to_dict("records")[0]["kind"] == "http_503"
    assert run.histogram("grpc", "get").get_total_count() == 30


def test_locust_command_lines(scenario: Path) -> None:
    sc = load_scenario(scenario)
    headless = locust_command(LocustOptions(str(scenario), "rest", web=False, users=5,
                                            warmup_s=1.0), sc, "http://h:1")
    assert headless[1:3] == ["-m", "locust"]
    assert headless[headless.index("--run-time") + 1] == "4s"  # warm-up + duration
    assert {"--headless", "--host", "http://h:1", "--users", "5", "--spawn-rate"} <= set(headless)
    web = locust_command(LocustOptions(str(scenario), "rest", web_port=9000), sc, "http://h:1")
    assert "--headless" not in web and web[web.index("--web-port") + 1] == "9000"
    assert web[web.index("--users") + 1] == "10"  # open-loop scenario: 10 users by default
    master = locust_command(LocustOptions(str(scenario), "rest", web=False, master=True,
                                          expect_workers=2, master_port=6000), sc, "u")
    assert master[master.index("--expect-workers") + 1] == "2"
    assert master[master.index("--master-bind-port") + 1] == "6000"
    worker = locust_command(LocustOptions(str(scenario), "rest", worker=True,
                                          master_host="10.0.0.1", extra=["--loglevel", "INFO"]),
                            sc, None)
    assert worker[5:] == ["--worker", "--master-host", "10.0.0.1", "--master-port", "5557",
                          "--loglevel", "INFO"]
    warmup = lambda text: duration_option(text, "--warmup", allow_zero=True)  # noqa: E731
    assert warmup("0s") == 0.0 and warmup("500ms") == 0.5 and warmup(None) is None


BRIDGE_SCRIPT = textwrap.dedent("""
    from gevent import monkey; monkey.patch_all()
    import asyncio, json, time, gevent
    from harness.locust.bridge import AsyncBridge

    async def fail():
        raise ValueError("boom")

    async def make_events():
        return asyncio.Event(), asyncio.Event()

    b = AsyncBridge().start()
    out = {"value": b.call(asyncio.sleep(0, result=42))}
    try:
        b.call(fail())
    except ValueError as exc:
        out["error"] = str(exc)
    out["service_ms"] = b.timed(asyncio.sleep(0.05)).service_ns / 1e6
    t0 = time.monotonic()
    gevent.joinall([gevent.spawn(b.call, asyncio.sleep(0.2)) for _ in range(50)],
                   raise_error=True)
    out["fifty_waits_s"] = time.monotonic() - t0
    started, cancelled = b.call(make_events())

    async def long():
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    g = gevent.spawn(b.call, long())
    b.call(asyncio.wait_for(started.wait(), 5))
    g.kill(block=True)
    b.call(asyncio.wait_for(cancelled.wait(), 5))
    out["cancelled"] = cancelled.is_set()
    b.stop()
    print(json.dumps(out))
""")


def test_bridge_under_gevent_returns_raises_overlaps_and_cancels() -> None:
    """In a monkey-patched process, as in locust: values and exceptions come back to the
    greenlet, fifty greenlets wait at once (not one after another), and killing a waiting
    greenlet (locust stopping a user) cancels its coroutine."""
    r = subprocess.run([sys.executable, "-c", BRIDGE_SCRIPT], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["value"] == 42 and out["error"] == "boom"
    assert out["service_ms"] >= 50
    assert out["fifty_waits_s"] < 5  # one after another would take 10 s
    assert out["cancelled"] is True


# -- real targets -------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_headless_run_against_a_real_target(tmp_path: Path, scenario: Path, mark: str,
                                            transport: str) -> None:
    results, stats = tmp_path / "results", tmp_path / "locust-stats"
    r = subprocess.run(
        commbench_locust(scenario, results, "--target", transport, "--headless", "-u", "10",
                         "-t", "3s", "--", "--json-file", str(stats)),
        env=env_with(mark), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "conformance 12/12 checks passed" in r.stderr
    counts = locust_json(stats.with_suffix(".json"))
    assert {"get", "list", "create"} <= set(counts)
    (folder,) = run_folders(results)
    check_folder(folder, transport, counts)
    run = load_run(folder)
    meta = run.context
    assert meta["targets"][0]["conformance"] == "12/12 checks passed"
    assert meta["scenario"]["load"]["model"] == "closed" and meta["scenario"]["load"]["users"] == 10
    assert meta["environment"]["packages"]["locust"]
    all_row = run.summary.set_index("operation").loc["all"]
    assert all_row["cpu_us_per_request"] > 0 and all_row["rss_mb_max"] > 0
    if transport == "rest":  # `commbench report` reads it like any run
        from reports.html import write_report

        page = write_report(folder)
        assert page.exists() and "locust-tiny" in page.read_text()


@pytest.mark.slow
@pytest.mark.broker
def test_headless_run_against_the_queue(tmp_path: Path, scenario: Path, mark: str,
                                        amqp_url: str) -> None:
    results, stats = tmp_path / "results", tmp_path / "locust-stats"
    r = subprocess.run(
        commbench_locust(scenario, results, "--target", "queue", "--headless", "-u", "10",
                         "-t", "3s", "--amqp-url", amqp_url, "--", "--json-file", str(stats)),
        env=env_with(mark), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    counts = locust_json(stats.with_suffix(".json"))
    (folder,) = run_folders(results)
    check_folder(folder, "queue", counts)
    # queue creations are recorded twice: accepted (broker confirm) and completed
    assert summary_counts(folder)[ACCEPTED] == counts["create"]["num_requests"]
    # a namespace of its own (a uuid token), deleted once the target stopped
    namespace = load_run(folder).context["targets"][0]["namespace"]
    assert re.fullmatch(r"cb-locust-\d{8}-\d{6}-[0-9a-f]{8}-queue", namespace), namespace
    assert broker_objects(amqp_url, namespace) == {}


@pytest.mark.slow
def test_master_and_worker_count_at_the_master(tmp_path: Path, mark: str) -> None:
    """Every request the worker made is in the master's result: the worker measures with
    the master's warm-up (the master says --warmup 0s, the worker's scenario says 2 s) and
    flushes its last seconds before the master stops listening. A 3 s test: had the worker
    kept its own 2 s warm-up, two of its three seconds would be missing (a longer test,
    once also run here, proves nothing more)."""
    run_time = "3s"
    scenario = tmp_path / "locust-warm.toml"
    scenario.write_text(SCENARIO.replace('warmup = "0s"', 'warmup = "2s"'))
    results, stats = tmp_path / "results", tmp_path / "master-stats"
    port = free_port()
    env = env_with(mark)
    master = subprocess.Popen(
        commbench_locust(scenario, results, "--target", "rest", "--headless", "--master",
                         "--expect-workers", "1", "--master-port", str(port), "-u", "6",
                         "-t", run_time, "--warmup", "0s", "--", "--json-file", str(stats)),
        env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "master.log", "wb"),
        cwd=ROOT, start_new_session=True)
    worker = subprocess.Popen(
        commbench_locust(scenario, results, "--target", "rest", "--worker", "--master-port",
                         str(port)),
        env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "worker.log", "wb"),
        cwd=ROOT, start_new_session=True)
    try:
        assert master.wait(120) == 0, (tmp_path / "master.log").read_text()[-3000:]
        assert worker.wait(60) == 0, (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        for p in (master, worker):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
                p.wait(30)
    counts = locust_json(stats.with_suffix(".json"))
    (folder,) = run_folders(results)
    check_folder(folder, "rest", counts)
    run = load_run(folder)
    generator = run.context["generator"]
    assert generator["mode"] == "master" and len(generator["workers"]) == 1
    assert generator["users"] == 6
    # locust's statistics in run.json include the worker's final report
    assert run.context["locust"]["num_requests"] == summary_counts(folder)["all"] \
        == sum(c["num_requests"] for c in counts.values())


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code", "said"), [
    (signal.SIGINT, 130, "interrupted"),
    # a service manager stopping the command is not Ctrl-C: 128 + 15
    (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_ctrl_c_writes_a_partial_result_and_stops_everything(
        tmp_path: Path, scenario: Path, mark: str, sig: int, code: int, said: str) -> None:
    results = tmp_path / "results"
    proc = subprocess.Popen(
        commbench_locust(scenario, results, "--target", "rest", "--headless", "-u", "5",
                         "-t", "120s"),
        env=env_with(mark), stdout=subprocess.DEVNULL, stderr=open(tmp_path / "log", "wb"),
        cwd=ROOT, start_new_session=True)
    try:
        # measuring: the first second has reached the timeline of the partial folder
        poll("a measured second", lambda: any(
            len(p.joinpath("timeline.csv").read_text().splitlines()) > 1
            for p in results.glob(".partial-*")), 60, proc)
        proc.send_signal(sig)
        assert proc.wait(60) == code
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert f"commbench: {said}" in (tmp_path / "log").read_text()
    (folder,) = run_folders(results)
    run = load_run(folder)
    assert run.context["status"] == "partial"
    assert summary_counts(folder)["all"] > 0


def test_a_run_time_within_the_warm_up_is_refused_up_front(tmp_path: Path, scenario: Path,
                                                          mark: str) -> None:
    """-t not longer than the warm-up would measure nothing: one line, exit 2, nothing
    started."""
    results = tmp_path / "results"
    r = subprocess.run(
        commbench_locust(scenario, results, "--target", "rest", "--headless", "-u", "2",
                         "-t", "3s", "--warmup", "3s"),
        env=env_with(mark), capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "warm-up" in lines[0] and "--warmup 0s" in lines[0], lines
    assert not results.exists() or not run_folders(results)


@pytest.mark.slow
def test_a_test_that_measured_nothing_says_so_and_fails(tmp_path: Path, scenario: Path,
                                                        mark: str) -> None:
    """locust's own --run-time (after --) ends the test inside the warm-up: the warnings of
    run.json are printed and the command exits 1."""
    results = tmp_path / "results"
    r = subprocess.run(
        commbench_locust(scenario, results, "--target", "rest", "--headless", "-u", "2",
                         "--warmup", "5s", "--", "--run-time", "1s"),
        env=env_with(mark), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 1, r.stderr[-3000:]
    (folder,) = run_folders(results)
    run = load_run(folder)
    assert run.context["status"] == "partial"
    nothing = [w for w in run.context["warnings"] if "nothing was measured" in w]
    assert nothing and f"commbench: warning: {nothing[0]}" in r.stderr
    assert f"commbench: warning: {CLOSED_LOOP_WARNING}" in r.stderr
    assert "measured nothing" in r.stderr


@pytest.mark.slow
def test_web_ui_driven_over_http_and_rendered_in_chromium(tmp_path: Path, scenario: Path,
                                                          mark: str) -> None:
    results, port = tmp_path / "results", free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        commbench_locust(scenario, results, "--target", "rest", "--web", "--web-port",
                         str(port)),
        env=env_with(mark), stdout=subprocess.DEVNULL, stderr=open(tmp_path / "log", "wb"),
        cwd=ROOT, start_new_session=True)
    try:
        page = poll("the web UI", lambda: http(base + "/"), 90, proc)
        assert "<html" in page.lower()
        # What a user's browser shows before a test. Chromium is required, never skipped:
        # `make test` installs it (scripts/system-deps.sh).
        assert CHROMIUM is not None, "needs Debian's chromium (make test installs it)"
        dom = chromium(base + "/", "--dump-dom")
        assert dom.returncode == 0, dom.stderr[-2000:]
        text = dom.stdout.decode()
        assert "Number of users" in text and "Start" in text
        assert rendered_stats(text) == {}  # no test yet: no statistics rows

        started = http(base + "/swarm", {"user_count": 10, "spawn_rate": 10})
        assert started["success"] is True

        def every_operation_seen() -> dict[str, Any] | None:
            s = http(base + "/stats/requests")
            names = stats_by_name(s)
            seen = all(names.get(op, {}).get("num_requests", 0) > 0
                       for op in ("get", "list", "create"))
            return s if seen else None

        running = poll("requests in locust's stats", every_operation_seen, 30, proc)
        assert running["state"] in ("running", "spawning")
        assert running["total_rps"] > 0 and running["fail_ratio"] == 0

        # The running test, as the page shows it: the statistics table holds a row per
        # operation of the scenario with the requests locust counted so far (at least what
        # /stats/requests said before the page loaded), none failed, and the total row.
        shot = ARTIFACTS / "locust-web-ui.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        shot.unlink(missing_ok=True)
        r = chromium(base + "/", f"--screenshot={shot}")
        assert r.returncode == 0 and shot.stat().st_size > 10_000
        shown = rendered_stats(chromium(base + "/", "--dump-dom").stdout.decode())
        assert set(shown) == {"get", "list", "create", "Aggregated"}, shown
        before = stats_by_name(running)
        for op in ("get", "list", "create"):
            assert shown[op][0] >= before[op]["num_requests"] > 0, (op, shown, before)
            assert shown[op][1] == 0
        assert shown["Aggregated"][0] == sum(shown[op][0] for op in ("get", "list", "create"))

        assert http(base + "/stop", {})["success"] is True

        def stopped() -> dict[str, Any] | None:
            s = http(base + "/stats/requests")
            return s if s["state"] == "stopped" else None

        final = poll("the test to stop", stopped, 30, proc)
        folders = poll("the result folder", lambda: run_folders(results), 30, proc)
        counts = {name: {"num_requests": s["num_requests"], "num_failures": s["num_failures"]}
                  for name, s in stats_by_name(final).items()}
        for op in ("get", "list", "create"):  # the page showed a moment of this same test
            assert shown[op][0] <= counts[op]["num_requests"], (op, shown, counts)
        check_folder(folders[0], "rest", counts)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # Ctrl-C: locust, then the target, stop
            assert proc.wait(60) == 130


def test_the_cli_side_never_imports_gevent_or_locust() -> None:
    """Monkey-patching stays in the locust subprocess: the modules the CLI imports for
    `commbench locust` load neither gevent nor locust."""
    code = ("import sys, harness.cli, harness.locust.command, harness.locust.results; "
            "print(sorted(m for m in ('gevent', 'locust', 'greenlet') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
