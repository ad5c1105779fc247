"""README, "Each ecosystem's production defaults": the queue client uses one AMQP connection
(three channels). tests/test_connections.py sees the one TCP connection from the kernel's
side; the channels exist only inside the broker, so this test asks the broker itself
(`rabbitmqctl list_connections` / `list_channels`) during a real `commbench run`.

rabbitmqctl needs the node's Erlang cookie, and the suite may not read the system broker's
(it belongs to the rabbitmq user), so the test starts a private node of its own and hands
its URL to the run; the node is stopped when the test ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

from harness.stage.broker import BrokerInfo, private_broker
from tests.procs import read_until, wait_until
from tests.test_connections import established

pytestmark = [pytest.mark.slow, pytest.mark.broker]

COMMBENCH = str(Path(sys.executable).parent / "commbench")
RUN_TIMEOUT_S = 180
LOAD_ON_S = 90  # start of the queue's services, the conformance gate
# Long enough for two rabbitmqctl calls (each boots an Erlang VM: a few seconds on a busy
# 2-core machine) while the generator's connection is still open.
SCENARIO = """
name = "amqp-channels"
targets = ["queue"]
duration = "12s"
warmup = "0s"
[data]
users = 20
orders_per_user = 5
[load]
rate = 50
arrival = "uniform"
timeout = "10s"
[operations]
get = 1
create = 1
"""


def _ctl_json(info: BrokerInfo, *args: str) -> list[dict]:
    assert info.ctl is not None
    return json.loads(info.ctl("-q", *args, "--formatter", "json"))


def _generator(run: psutil.Process) -> psutil.Process:
    tree = run.children(recursive=True)
    (generator,) = [c for c in tree if c.ppid() == run.pid
                    and any("multiprocessing.spawn" in a for a in c.cmdline())]
    return generator


def test_the_queue_client_holds_one_connection_with_three_channels(tmp_path: Path) -> None:
    """During the load, the broker lists exactly one connection from the generator's
    process (matched by its client port, read from the kernel), holding exactly three
    channels, as targets/queue/client.py opens them: lookups on a channel without publisher
    confirms, creates on one with confirms (their ack is `create_accepted`), and replies and
    events consumed on a third (two consumers: the reply queue and the event queue, both
    exclusive to that connection). The shared command and lookup queues are durable."""
    with private_broker(tmp_path / "broker") as info:
        port = urlsplit(info.url).port
        scenario = tmp_path / "channels.toml"
        scenario.write_text(SCENARIO)
        proc = subprocess.Popen(
            [COMMBENCH, "run", str(scenario), "--amqp-url", info.url,
             "--results-dir", str(tmp_path / "results")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            read_until(proc, "load on queue r1", LOAD_ON_S)
            generator = _generator(psutil.Process(proc.pid))
            local = wait_until(lambda: established(generator.pid, port), 30,
                               "a connection from the generator to the broker")
            connections = _ctl_json(info, "list_connections", "pid", "peer_port", "channels")
            channels = _ctl_json(info, "list_channels", "connection", "number", "confirm",
                                 "consumer_count")
            queues = _ctl_json(info, "list_queues", "name", "durable", "owner_pid")
            still_on = proc.poll() is None
            out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert proc.returncode == 0, out + err
    assert still_on, "the run ended before the broker was asked"
    # the kernel and the broker agree: one connection, from the generator's port
    assert len(local) == 1, local
    mine = [c for c in connections if c["peer_port"] in local]
    assert len(mine) == 1, connections
    (conn,) = mine
    assert conn["channels"] == 3, conn
    opened = sorted((c for c in channels if c["connection"] == conn["pid"]),
                    key=lambda c: c["number"])
    # in the order the client opens them: lookups, commands (confirms), consumers
    assert [(c["confirm"], c["consumer_count"]) for c in opened] == [
        (False, 0), (True, 0), (False, 2)], opened
    # README, "Durability": commands and lookups go to durable queues; the client's reply and
    # event queues are its connection's own (exclusive), gone with it
    shared = [q for q in queues if q["name"].endswith((".commands", ".rpc"))]
    assert len(shared) >= 2 and all(q["durable"] for q in shared), queues
    owned = sorted(q["name"].split(".")[-2] for q in queues  # <ns>.reply.<client id>
                   if q["owner_pid"] == conn["pid"])
    assert owned == ["client", "reply"], queues
