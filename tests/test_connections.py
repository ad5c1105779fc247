"""README, "Each ecosystem's production defaults, which also means different connection
models": aiohttp keeps a pool of HTTP/1.1 keep-alive connections, gRPC multiplexes one
HTTP/2 channel, the queue client uses one AMQP connection. Seen from the kernel's side
during a real `commbench run`: the TCP connections the generator process holds to the
server (to the broker, for the queue), read twice a second apart while the load is on.

The queue connection's three channels exist only inside the broker: see
tests/test_amqp_channels.py, which asks a private node of its own with rabbitmqctl."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

from tests.procs import read_until, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.broker]

COMMBENCH = str(Path(sys.executable).parent / "commbench")
RUN_TIMEOUT_S = 240  # three short target runs; generous for a busy 2-core machine
LOAD_ON_S = 90  # from one target's "load on" line to the next: stop, start, gate, warm-up
RATE = 100  # requests/s: a request every 10 ms
SCENARIO = f"""
name = "connections"
description = "the generator's connections to each transport"
targets = ["rest", "grpc", "queue"]
duration = "3s"
warmup = "500ms"

[data]
users = 20
orders_per_user = 5

[load]
rate = {RATE}
arrival = "uniform"
timeout = "10s"

[operations]
get = 6
list = 2
create = 2
"""


def established(pid: int, port: int) -> set[int]:
    """Local ports of the process's established TCP connections to `port` on loopback."""
    return {c.laddr.port for c in psutil.Process(pid).net_connections(kind="tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.raddr and c.raddr.port == port}


def listening_port(pid: int) -> int:
    (port,) = {c.laddr.port for c in psutil.Process(pid).net_connections(kind="tcp")
               if c.status == psutil.CONN_LISTEN}
    return port


def test_each_transport_keeps_its_connection_model_under_load(tmp_path: Path,
                                                               amqp_url: str) -> None:
    """Two samples of the generator's connections 1 s apart, about 100 requests between
    them. gRPC and the queue: exactly one connection, the same one both times. REST through
    aiohttp: a pool, whose connections outlive those requests (keep-alive; without it each
    request would open a connection of its own and none would be seen twice)."""
    scenario = tmp_path / "connections.toml"
    scenario.write_text(SCENARIO)
    proc = subprocess.Popen(
        [COMMBENCH, "run", str(scenario), "--amqp-url", amqp_url,
         "--results-dir", str(tmp_path / "results")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen: dict[str, tuple[set[int], set[int]]] = {}
    try:
        for target in ("rest", "grpc", "queue"):
            read_until(proc, f"load on {target} r1", LOAD_ON_S)
            tree = psutil.Process(proc.pid).children(recursive=True)
            servers = [c for c in tree if "serve" in c.cmdline()]
            (generator,) = [c for c in tree if c.ppid() == proc.pid  # one load process
                            and any("multiprocessing.spawn" in a for a in c.cmdline())]
            port = urlsplit(amqp_url).port or 5672 if target == "queue" else \
                listening_port(servers[0].pid)
            # The first sample once the generator has connected (aiohttp connects on the
            # first request); then pacing, not synchronisation: the load runs on for the
            # window's wall-clock seconds whatever the machine's speed, and 1 s is well
            # inside the 3.5 s window.
            first = wait_until(lambda g=generator.pid, p=port: established(g, p), 30,
                               f"a connection from the generator to {target}")
            time.sleep(1.0)
            seen[target] = (first, established(generator.pid, port))
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out + err
    for target in ("grpc", "queue"):
        first, second = seen[target]
        assert len(first) == 1 and first == second, (target, seen[target])
    first, second = seen["rest"]
    assert first and second and first & second, seen["rest"]
