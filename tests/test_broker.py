"""Broker lifecycle: the system broker when it answers, else a private rabbitmq-server that
really serves AMQP and leaves no process or folder behind (normal exit, error, SIGKILL)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import aio_pika
import psutil
import pytest

from harness.errors import UserError
from harness.stage import broker
from harness.stage.broker import BrokerInfo, ensure_broker, probe
from targets.serving import DEFAULT_AMQP_URL
from tests.conftest import run
from tests.procs import still_running

pytestmark = pytest.mark.broker

needs_private = pytest.mark.skipif(
    not os.access(broker.RABBIT_BIN / "rabbitmq-server", os.X_OK),
    reason="rabbitmq-server is not installed",
)


def _closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"amqp://guest:guest@127.0.0.1:{port}/"


def _node_processes(node: str) -> list[psutil.Process]:
    """Processes of a private node: they carry its name in their environment (the VM gets
    it from RABBITMQ_NODENAME, not from its command line) or in their command line."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(node in part for part in p.info["cmdline"] or ()) or \
                    p.environ().get("RABBITMQ_NODENAME") == node:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return [p for p in found if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


async def _round_trip(url: str) -> bytes:
    """Publish with a confirm and consume it back: the broker really works."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await channel.default_exchange.publish(aio_pika.Message(b"ping"), routing_key=queue.name)
        async with queue.iterator() as it:
            message = await anext(it)
            await message.ack()
            return message.body


def test_a_broker_that_answers_is_used(tmp_path: Path, amqp_url: str) -> None:
    """Whatever answers at the URL is used and left running: the system broker at
    DEFAULT_AMQP_URL when there is one, else the private broker this test session started
    (a fresh machine), which to this call is just as foreign."""
    assert probe(amqp_url)
    with ensure_broker(amqp_url, tmp_path) as info:
        assert info == BrokerInfo(amqp_url, private=False, startup_s=info.startup_s)
        assert run(_round_trip(info.url)) == b"ping"
    assert probe(amqp_url)  # not ours to stop
    assert list(tmp_path.iterdir()) == []  # nothing was started


def test_probe_fails_on_a_closed_port_and_on_a_non_amqp_port() -> None:
    assert not probe(_closed_url())
    with socket.socket() as listener:  # accepts TCP but never speaks AMQP
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not probe(f"amqp://guest:guest@127.0.0.1:{port}/", timeout=1.0)


@needs_private
def test_private_broker_when_the_url_does_not_answer(tmp_path: Path) -> None:
    closed = _closed_url()
    with ensure_broker(closed, tmp_path) as info:
        assert info.private and info.url != closed and info.node.startswith("commbench-")
        assert info.url != DEFAULT_AMQP_URL  # its own port, beside any system broker
        assert run(_round_trip(info.url)) == b"ping"
        assert _node_processes(info.node), "the node's processes are visible while it runs"
        assert info.log_dir is not None and info.log_dir.is_dir()
        print(f"\nprivate RabbitMQ ready in {info.startup_s:.2f} s ({info.node})")
    assert _node_processes(info.node) == []
    assert not probe(info.url)
    assert list(tmp_path.iterdir()) == []  # data, logs, cookie: all removed


@needs_private
@pytest.mark.slow
def test_private_broker_is_stopped_when_the_body_fails(tmp_path: Path) -> None:
    node = ""
    with pytest.raises(RuntimeError, match="boom"), ensure_broker(_closed_url(), tmp_path) as info:
        node = info.node
        raise RuntimeError("boom")
    assert node and _node_processes(node) == []


@needs_private
@pytest.mark.slow
def test_private_broker_dies_with_a_killed_harness(tmp_path: Path) -> None:
    """SIGKILL leaves no chance to clean up: the parent-death signal must take the VM down.
    The work folder is deep on purpose: the readiness socket once lived there, and past the
    107 bytes a socket path may have, the VM ran under a shell that the signal did not reach."""
    work = tmp_path / ("deep" * 15)
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from harness.stage.broker import ensure_broker
        with ensure_broker({_closed_url()!r}, Path({str(work)!r})) as info:
            print(info.node, flush=True)
            sys.stdin.read()  # until the test kills us
    """)
    harness = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    processes: list[psutil.Process] = []
    try:
        node = harness.stdout.readline().strip()  # type: ignore[union-attr]
        assert node.startswith("commbench-")
        processes = _node_processes(node)
        assert processes
    finally:
        harness.send_signal(signal.SIGKILL)
        harness.wait()
    alive = still_running(processes, timeout=10)
    for p in alive:  # a failure must not leave a broker behind for the rest of the suite
        with contextlib.suppress(psutil.Error):
            p.kill()
    assert alive == []


def test_not_installed_is_a_user_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(broker, "RABBIT_BIN", tmp_path / "missing")
    with pytest.raises(UserError, match=r"rabbitmq-server is not installed: run "
                                        r"`sudo apt-get install -y rabbitmq-server` or pass "
                                        r"--amqp-url of a running broker"):
        with ensure_broker(_closed_url(), tmp_path):
            pass
