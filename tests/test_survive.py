"""A run keeps what it measured whatever stops it, and every limit holds before anything
starts: the issue's cases 2, 3, 4, 6 and 8, as a user meets them, on real processes, a real
broker and real result folders. Every wait is bounded; polling paces itself."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from harness.run.abandoned import MARKER
from harness.run.results import ResultWriter
from harness.stage.broker import private_broker
from reports.loader import load_run
from targets.redact import redact
from tests import procs
from tests.test_cli import broker_url

COMMBENCH = str(Path(sys.executable).parent / "commbench")
ROOT = Path(__file__).resolve().parent.parent
SCENARIO = """
name = "survive"
description = "short targets for the survival tests"
targets = ["rest"]
duration = "{duration}"
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


def scenario(tmp_path: Path, duration: str) -> Path:
    path = tmp_path / f"survive-{duration}.toml"
    path.write_text(SCENARIO.format(duration=duration))
    return path


def wait_for(what: str, check: Callable[[], object], timeout: float,
             proc: subprocess.Popen[str] | None = None) -> object:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: commbench exited with {proc.returncode}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)  # pacing of a poll of files another process writes
    return value


def measured_second(results: Path, target: str) -> bool:
    """A measured interval of `target` has reached the histograms of the partial folder."""
    for hlog in results.glob(f".partial-*/histograms/{target}-r1-latency.hlog"):
        if any(ln.startswith("Tag=") and not ln.split(",")[1].startswith("-")
               for ln in hlog.read_text().splitlines()):
            return True
    return False


def start(args: list[str], **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen([COMMBENCH, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, cwd=ROOT,
                            preexec_fn=procs.as_a_terminal_starts_it, **kw)  # type: ignore[call-overload]


def read_until(proc: subprocess.Popen[str], prefix: str) -> None:
    """Wait on the command's own output until a line starts with `prefix`: 60 s of its own
    (start, gate and warm-up take a few seconds on a quiet machine), and a command that
    exits first fails the test."""
    procs.read_until(proc, prefix, 60)


def finish(proc: subprocess.Popen[str], timeout: float = 90) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def namespace_exists(amqp_url: str, namespace: str) -> bool:
    import aio_pika

    async def check() -> bool:
        connection = await aio_pika.connect(amqp_url, timeout=5)
        async with connection:
            try:
                await (await connection.channel()).declare_queue(f"{namespace}.rpc", passive=True)
            except Exception:
                return False
            return True

    return asyncio.run(check())


def the_run(results: Path) -> tuple[Path, dict]:
    (folder,) = [p for p in results.iterdir() if not p.name.startswith(".")]
    return folder, json.loads((folder / "run.json").read_text())


def test_a_hang_up_finalises_like_ctrl_c_and_deletes_the_namespace(tmp_path: Path,
                                                                   amqp_url: str) -> None:
    """Case 2, the caught half: a dropped ssh session (SIGHUP to the foreground process
    group) keeps what was measured, writes run.json `partial` and leaves no queue behind."""
    results = tmp_path / "results"
    proc = start(["run", str(scenario(tmp_path, "60s")), "--targets", "queue",
                  "--amqp-url", amqp_url, "--results-dir", str(results)])
    read_until(proc, "load on queue r1")
    wait_for("a measured second", lambda: measured_second(results, "queue"), 30, proc)
    tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    (marker,) = results.glob(f".partial-*/{MARKER}")
    namespace = json.loads(marker.read_text().splitlines()[0])["namespace"]
    assert namespace_exists(amqp_url, namespace)
    os.killpg(proc.pid, signal.SIGHUP)  # what the terminal does to its foreground group
    _, err = finish(proc)
    assert proc.returncode == 129, err
    assert err.strip().startswith("commbench: hang-up (SIGHUP)") and "Traceback" not in err
    assert procs.still_running(tree, timeout=10) == []
    folder, meta = the_run(results)
    (target,) = meta["targets"]
    assert meta["status"] == "partial" and target["status"] == "interrupted"
    assert target["error"] == "interrupted during the run (SIGHUP)"
    assert target["measured_s"] >= 1 and target["namespace"] == namespace
    assert not namespace_exists(amqp_url, namespace)
    assert not (folder / MARKER).exists()
    run = load_run(folder)
    assert int(run.summary.query("operation == 'all'")["count"].iloc[0]) > 0


def test_a_closed_stdout_stops_the_run_without_failing_it(tmp_path: Path) -> None:
    """Case 3: the reader of the output goes away mid-measurement. The run finalises as on
    Ctrl-C, keeps the seconds it measured and says so on stderr (it exited 1 silently with
    the target `failed` and nothing measured)."""
    results = tmp_path / "results"
    proc = start(["run", str(scenario(tmp_path, "60s")), "--results-dir", str(results)])
    read_until(proc, "load on rest r1")
    wait_for("two measured seconds", lambda: any(
        r.startswith("rest,1,1,all,") for p in results.glob(".partial-*/timeline.csv")
        for r in p.read_text().splitlines()), 30, proc)
    assert proc.stdout is not None
    proc.stdout.close()  # `| head` exits
    try:
        proc.wait(60)
        err = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 141, err  # 128 + SIGPIPE, as a shell reports `| head`
    folder, meta = the_run(results)
    assert err.strip() == f"commbench: stdout was closed; partial result in {folder}"
    (target,) = meta["targets"]
    assert meta["status"] == "partial"
    assert (target["status"], target["error"]) == ("interrupted",
                                                    "interrupted during the run (stdout closed)")
    assert target["measured_s"] >= 1
    all_row = load_run(folder).summary.query("operation == 'all'").iloc[0]
    assert all_row["count"] > 0 and all_row["throughput_rps"] > 50


def test_head_on_the_output_leaves_a_partial_result_and_exit_141(tmp_path: Path) -> None:
    """Case 3 as typed: `commbench run … | head -2`."""
    results = tmp_path / "results"
    p = subprocess.run(
        ["bash", "-c", f'"{COMMBENCH}" run "{scenario(tmp_path, "30s")}" --results-dir '
                       f'"{results}" | head -2; echo "exit ${{PIPESTATUS[0]}}" >&2'],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert len(p.stdout.splitlines()) == 2
    folder, meta = the_run(results)
    assert p.stderr.splitlines() == [f"commbench: stdout was closed; partial result in {folder}",
                                     "exit 141"]
    assert meta["status"] == "partial"
    assert all(t["status"] != "failed" for t in meta["targets"])


def test_a_sigkilled_run_is_found_read_and_finalised(tmp_path: Path, amqp_url: str) -> None:
    """Case 2, the uncatchable half: SIGKILL while the third target is measured. The
    folder reads with a warning (its two finished targets as written, the third rebuilt
    from its histograms), the next run reports it, and `clean --finalise` deletes its
    namespace and turns it into a partial run."""
    results = tmp_path / "results"
    proc = start(["run", str(scenario(tmp_path, "2s")), "--targets", "rest,grpc,queue",
                  "--amqp-url", amqp_url, "--results-dir", str(results)])
    read_until(proc, "load on queue r1")
    wait_for("a measured second", lambda: measured_second(results, "queue"), 30, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    finish(proc)
    (partial,) = results.glob(".partial-*")
    namespace = json.loads((partial / MARKER).read_text())["namespace"]
    assert namespace_exists(amqp_url, namespace)

    p = subprocess.run([COMMBENCH, "report", str(results)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and str(partial) in p.stderr and "commbench clean" in p.stderr
    run = load_run(partial)
    assert any(w.startswith("unfinished run") for w in run.warnings)
    assert any(w.startswith("summary.csv has no rows for queue r1") for w in run.warnings)
    alls = run.summary.query("operation == 'all'").set_index("target")
    assert set(alls.index) == {"rest", "grpc", "queue"}
    assert alls.loc["rest", "cpu_us_per_request"] > 0  # as written
    assert alls.loc["queue", "throughput_rps"] > 50  # rebuilt over the seconds it measured
    p = subprocess.run([COMMBENCH, "report", str(partial), "--out", str(tmp_path / "k.html")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr

    p = subprocess.run([COMMBENCH, "run", str(scenario(tmp_path, "1s")), "--results-dir",
                        str(results)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert f"found abandoned run {partial} (process {proc.pid} is gone)" in p.stdout
    assert "queue r1 killed while measuring" in p.stdout and "commbench clean" in p.stdout

    p = subprocess.run([COMMBENCH, "clean", "--results-dir", str(results)],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 0 and "--finalise" in p.stdout and partial.exists()
    p = subprocess.run([COMMBENCH, "clean", "--results-dir", str(results), "--finalise",
                        "--amqp-url", amqp_url], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"deleted broker namespace {namespace}" in p.stdout
    assert not namespace_exists(amqp_url, namespace) and not partial.exists()
    final = results / partial.name.removeprefix(".partial-")
    meta = json.loads((final / "run.json").read_text())
    status = {t["name"]: t["status"] for t in meta["targets"]}
    assert meta["status"] == "partial" and "process" not in meta and meta["files"]
    assert status == {"rest": "ok", "grpc": "ok", "queue": "interrupted"}
    assert subprocess.run([COMMBENCH, "clean", "--results-dir", str(results)],
                          capture_output=True, text=True, timeout=60).stdout.startswith(
        "no abandoned runs")
    assert load_run(final).summary.query("operation == 'all'")["target"].tolist() \
        == ["rest", "grpc", "queue"]


def test_clean_removes_only_runs_whose_process_is_gone(tmp_path: Path) -> None:
    """A folder of a live run (this test's own process) is never touched; a gone one's is
    removed on request."""
    live = ResultWriter(tmp_path, "20260101-000000-live")
    gone = ResultWriter(tmp_path, "20260101-000000-gone")
    child = subprocess.Popen(["true"])
    child.wait()
    meta = json.loads((gone.dir / "run.json").read_text())
    meta["process"]["pid"] = child.pid
    (gone.dir / "run.json").write_text(json.dumps(meta))
    p = subprocess.run([COMMBENCH, "clean", "--results-dir", str(tmp_path), "--remove"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert f"removed {gone.dir}" in p.stdout and str(live.dir) not in p.stdout
    assert live.dir.exists() and not gone.dir.exists()


def test_processes_beyond_the_machine_are_refused_before_anything_starts(tmp_path: Path) -> None:
    """Case 4: --processes 1000 would spawn 1000 interpreters of about 62 MB each."""
    results = tmp_path / "results"
    p = subprocess.run([COMMBENCH, "run", str(scenario(tmp_path, "1s")), "--processes", "1000",
                        "--results-dir", str(results)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2
    cpus = len(os.sched_getaffinity(0))
    assert p.stderr.strip().splitlines() == [
        f"commbench: --processes 1000: at most {2 * cpus} here: the load generator may use "
        f"{cpus} CPU(s) (this machine), and more than 2 processes per CPU only take turns, "
        "adding scheduling delay to the latency they measure"]
    assert not results.exists()
    p = subprocess.run([COMMBENCH, "run", str(scenario(tmp_path, "1s")), "--processes", "3",
                        "--load-cpus", "0", "--results-dir", str(results)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "at most 2 here" in p.stderr and "(--load-cpus)" in p.stderr


@pytest.mark.broker
def test_a_vhost_the_broker_lacks_is_refused_not_replaced(tmp_path: Path, amqp_url: str) -> None:
    """Case 6: a missing vhost used to fall back quietly to a private broker."""
    results = tmp_path / "results"
    url = broker_url(amqp_url, vhost="novhost")
    p = subprocess.run([COMMBENCH, "run", str(scenario(tmp_path, "1s")), "--targets", "queue",
                        "--amqp-url", url,
                        "--results-dir", str(results)], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        f"commbench: the broker at {redact(url)} refused to open "
        "virtual host 'novhost' (it does not exist, or the user may not use it): check the "
        "vhost in --amqp-url (the part after the port; the default vhost is '/', written as "
        "a URL ending in '/')"]
    assert "private" not in p.stdout and not list(results.glob("*"))


@pytest.mark.broker
def test_a_broker_that_closes_connections_costs_one_line(tmp_path: Path) -> None:
    """Case 8: a broker shutting down mid-run (it closes every connection) used to print
    an aiormq traceback and `Callback … error` lines; now one line per process at most,
    and the run says what happened to the target."""
    results = tmp_path / "results"
    with private_broker(tmp_path / "broker") as broker:
        proc = start(["run", str(scenario(tmp_path, "60s")), "--targets", "queue",
                      "--amqp-url", broker.url, "--results-dir", str(results)])
        read_until(proc, "load on queue r1")
        wait_for("a measured second", lambda: measured_second(results, "queue"), 30, proc)
    out, err = finish(proc, timeout=120)  # the broker stopped as the block closed
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "Callback" not in err, err
    lines = err.strip().splitlines()  # at most one from the load process, one from commbench
    assert all(re.match(r"commbench: (load process 0: )?broker connection: ", ln) for ln in lines), \
        lines
    assert len(lines) <= 2 and len(set(ln.split("broker connection")[0] for ln in lines)) \
        == len(lines)
    _, meta = the_run(results)
    assert meta["targets"][0]["status"] == "failed"
    assert "lost the broker" in meta["targets"][0]["error"]


def test_a_listing_whose_reader_left_exits_141_without_a_word() -> None:
    """`commbench scenarios | head`: the reader had what it wanted and nothing was lost, so
    the command ends as `yes | head` does: 141 and nothing on stderr (it said "stdout was
    closed"). The read end is closed before the command writes a line."""
    proc = subprocess.Popen([COMMBENCH, "scenarios"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(60) == 141, err
    assert err == ""
