"""The RabbitMQ a run uses: the one at --amqp-url when it answers, otherwise a private node.

A private node is fully isolated from a system broker on the same machine: its own node name,
AMQP, distribution and epmd ports, config, data and log folders, all in one temporary
directory. It runs in its own process group with a parent-death signal (like every service
the launcher starts), and is stopped and removed when the context exits, on every exit path.
This module prints nothing; timings come back in BrokerInfo.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from harness.errors import UserError
from harness.lifecycle import amqp_logs_off, child_setup, kill_group
from harness.stage.private import running
from targets.queue.topology import url_problem
from targets.redact import redact

PROBE_TIMEOUT_S = 3.0
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.2  # pacing of readiness checks of external processes
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")  # the real scripts: they honour the environment
NOT_INSTALLED = ("rabbitmq-server is not installed: run `sudo apt-get install -y rabbitmq-server` "
                 "or pass --amqp-url of a running broker")


@dataclass(frozen=True)
class BrokerInfo:
    url: str
    private: bool
    startup_s: float  # private: start until AMQP accepted a connection; else: the probe
    node: str = ""  # private node name, e.g. commbench-123-ab12cd@localhost
    log_dir: Path | None = None
    # private: stop (False) or start (True) the broker application, for the broker fault
    switch: Callable[[bool], None] | None = field(default=None, compare=False, repr=False)
    # private: run `rabbitmqctl -n <node> ARGS…` with the node's environment; its stdout
    ctl: Callable[..., str] | None = field(default=None, compare=False, repr=False)


def probe(amqp_url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """A real AMQP connect (TCP, handshake, auth, opening the vhost): an open port alone
    proves nothing. A broker that answers but refuses the login or the vhost is a UserError:
    starting a private broker instead would measure another broker without saying so.

    A plain TCP connect goes first so a closed port fails fast and quietly (aiormq logs
    every failed connection attempt)."""
    import aio_pika
    from aiormq.exceptions import ProbableAuthenticationError, ProtocolSyntaxError

    parts = urlsplit(amqp_url)
    if not _port_open(parts.port or 5672, parts.hostname or "localhost", timeout):
        return False

    refused: list[str] = []

    async def attempt() -> bool:
        try:
            connection = await aio_pika.connect(amqp_url, timeout=timeout)
        except ProbableAuthenticationError as exc:
            refused.append(f"refused the login ({str(exc).split(' - ')[0] or 'ACCESS_REFUSED'}): "
                           "check the user and password in --amqp-url")
            return False
        except ProtocolSyntaxError as exc:
            # RabbitMQ answers Connection.Open on a vhost it lacks (or the user may not use)
            # with Connection.Close; aiormq reports the unexpected frame.
            if "Connection.Close" not in str(exc):
                return False
            refused.append(f"refused to open virtual host {_vhost(amqp_url)!r} (it does not "
                           "exist, or the user may not use it): check the vhost in --amqp-url "
                           "(the part after the port; the default vhost is '/', written as a "
                           "URL ending in '/')")
            return False
        except Exception:
            return False
        await connection.close()
        return True

    if _run_in_thread(attempt()):
        return True
    if refused:  # a broker answered but said no: starting another one would hide that
        raise UserError(f"the broker at {redact(amqp_url)} {refused[0]}")
    return False


def _vhost(amqp_url: str) -> str:
    """The virtual host an AMQP URL names (URL-decoded; '/' when the path is empty or '/')."""
    from urllib.parse import unquote

    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


@contextlib.contextmanager
def ensure_broker(amqp_url: str, work_dir: Path | None = None, *,
                  private: bool = False) -> Iterator[BrokerInfo]:
    """Yield a broker that answers: `amqp_url` if it does, else a private node (stopped on
    exit). `private`: always a private node (a run that stops its broker on purpose)."""
    problem = url_problem(amqp_url)
    if problem:
        raise UserError(f"--amqp-url: {problem}")
    start = time.monotonic()
    if not private and probe(amqp_url):
        yield BrokerInfo(amqp_url, private=False, startup_s=time.monotonic() - start)
        return
    with private_broker(work_dir) as info:
        yield info


@contextlib.contextmanager
def private_broker(work_dir: Path | None = None) -> Iterator[BrokerInfo]:
    server, ctl, epmd = RABBIT_BIN / "rabbitmq-server", RABBIT_BIN / "rabbitmqctl", _epmd()
    if not (os.access(server, os.X_OK) and os.access(ctl, os.X_OK) and epmd):
        raise UserError(NOT_INSTALLED)
    with running(lambda base: _Node(base, server, ctl, epmd), "commbench-rabbitmq-",
                 work_dir) as (node, startup_s):
        yield BrokerInfo(node.url, private=True, startup_s=startup_s, node=node.name,
                         log_dir=node.log_dir, switch=node.switch, ctl=node.ctl)


class _Node:
    """One private rabbitmq-server plus the epmd it registers with (both owned by us)."""

    def __init__(self, base: Path, server: Path, ctl: Path, epmd: str) -> None:
        self.base, self.server, self.ctl_bin, self.epmd_bin = base, server, ctl, epmd
        short = f"commbench-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.name = f"{short}@localhost"
        self.port, self.dist_port, self.epmd_port = _free_ports(3)
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self.log_dir = base / "log"
        self.output = base / "rabbitmq-server.out"
        self.env = self._environment()
        self.epmd: subprocess.Popen[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.ready = False

    def _environment(self) -> dict[str, str]:
        home, mnesia = self.base / "home", self.base / "mnesia"
        for d in (home, mnesia, self.log_dir):
            d.mkdir()
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq-env.conf").write_text("")  # not /etc/rabbitmq's
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"  # /etc's may name 5672
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update({
            "HOME": str(home),  # the Erlang cookie lives here; rabbitmqctl must see it too
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(mnesia),
            "RABBITMQ_LOG_BASE": str(self.log_dir),
            "RABBITMQ_PID_FILE": str(self.base / "rabbitmq.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_PORT": str(self.epmd_port),  # a private epmd: nothing outlives the node
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        })
        return env

    def _spawn(self, argv: list[str], out: Path) -> subprocess.Popen[bytes]:
        with open(out, "ab") as log:
            return subprocess.Popen(
                argv, env=self.env, cwd=self.base, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=lambda: child_setup(()),  # prctl must run in the child
            )

    def start(self) -> float:
        start = time.monotonic()
        deadline = start + READY_TIMEOUT_S
        self.epmd = self._spawn([self.epmd_bin, "-port", str(self.epmd_port)],
                                self.base / "epmd.out")
        # erl would start a detached epmd of its own if ours were not listening yet.
        self._wait(lambda: _port_wait(self.epmd_port), self.epmd, deadline, "epmd")
        with _notify_socket() as notify:
            if notify is not None:
                # sd_notify: the script then execs the VM (the parent-death signal holds for
                # the broker itself, not just a wrapper shell) and tells us when it is ready.
                self.env["NOTIFY_SOCKET"] = notify.getsockname()
            self.process = self._spawn([str(self.server)], self.output)
            self._wait(lambda: _notified_ready(notify) or probe(self.url, timeout=1.0),
                       self.process, deadline, "rabbitmq-server")
        if not probe(self.url):  # READY=1 said so; one real AMQP connect confirms it
            raise UserError(f"private rabbitmq-server at {self.url} does not answer; "
                            f"see {self.output} and {self.log_dir}")
        self.ready = True
        return time.monotonic() - start

    def _wait(self, check: Callable[[], bool], process: subprocess.Popen[bytes],
              deadline: float, what: str) -> None:
        while not check():
            if process.poll() is not None:
                raise UserError(
                    f"private {what} exited with code {process.returncode} before it was "
                    f"ready; see {self.output} and {self.log_dir}"
                )
            if time.monotonic() > deadline:
                raise UserError(
                    f"private {what} was not ready within {READY_TIMEOUT_S:.0f} s; "
                    f"see {self.output} and {self.log_dir}"
                )

    def switch(self, on: bool) -> None:
        """Start or stop the RabbitMQ application, the Erlang node staying up: stopping
        closes every connection and keeps durable queues with their persistent messages."""
        self.ctl("start_app" if on else "stop_app")
        if on and not probe(self.url):
            raise UserError(f"the private broker at {self.url} does not answer after start_app")

    def ctl(self, *args: str) -> str:
        """`rabbitmqctl -n <node> ARGS…` with this node's environment (its cookie and epmd,
        which no other rabbitmqctl call would find); its stdout. UserError when it fails."""
        command = " ".join(args)
        try:
            done = subprocess.run(
                [str(self.ctl_bin), "-n", self.name, *args], env=self.env, cwd=self.base,
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise UserError(f"rabbitmqctl {command} did not finish within "
                            f"{STOP_TIMEOUT_S:.0f} s") from None
        if done.returncode != 0:
            why = (done.stderr or done.stdout).strip().splitlines()
            raise UserError(f"rabbitmqctl {command} failed (exit {done.returncode})"
                            + (f": {why[-1]}" if why else ""))
        return done.stdout

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                subprocess.run(
                    [str(self.ctl_bin), "-n", self.name, "stop"], env=self.env, cwd=self.base,
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, timeout=STOP_TIMEOUT_S,
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_TIMEOUT_S)
        for process in (self.process, self.epmd):
            if process is not None:
                kill_group(process)  # stragglers such as erl_child_setup


@contextlib.contextmanager
def _notify_socket() -> Iterator[socket.socket | None]:
    """A datagram socket for systemd-style readiness messages (None if it cannot be made).

    It lives in a short folder of its own under the temporary directory, not in the node's
    work folder: a socket path is limited to 107 bytes, and without the socket the script
    keeps a shell between us and the VM, so a killed harness would leave the VM running."""
    folder = tempfile.mkdtemp(prefix="cb-rmq-")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        try:
            sock.bind(os.path.join(folder, "notify.sock"))
        except OSError:  # a temporary directory whose path is still too long
            sock.close()
            yield None
            return
        with sock:
            yield sock
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _notified_ready(sock: socket.socket | None) -> bool:
    """Wait up to one poll interval for `READY=1`; without a socket, just pace the polling."""
    if sock is None:
        time.sleep(POLL_INTERVAL_S)
        return False
    readable, _, _ = select.select([sock], [], [], POLL_INTERVAL_S)
    return bool(readable) and b"READY=1" in sock.recv(4096)


def _port_wait(port: int) -> bool:
    if _port_open(port):
        return True
    time.sleep(POLL_INTERVAL_S)
    return False


def _epmd() -> str | None:
    return shutil.which("epmd") or next(
        (str(p) for p in sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"))), None
    )


def _free_ports(n: int) -> list[int]:
    """Ports the OS hands out for port 0, held together so the n are distinct."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_open(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def _run_in_thread(coro: object) -> bool:
    """Run a coroutine on a fresh loop in a worker thread, so callers inside a running event
    loop (async tests, the engine) can use this module too."""
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(coro)), daemon=True)  # type: ignore[arg-type]
    thread.start()
    thread.join()
    return bool(result and result[0])


def describe(info: BrokerInfo) -> str:
    """One line for the CLI to print (this module prints nothing itself)."""
    if info.private:
        return f"started a private RabbitMQ {info.node} at {redact(info.url)} in {info.startup_s:.1f} s"
    return f"using the RabbitMQ at {redact(info.url)}"


def broker_pids(amqp_url: str) -> list[int] | None:
    """The pid listening on the broker's AMQP port (beam.smp for RabbitMQ), or None when it
    cannot be found or read (then the caller records a warning instead of guessing)."""
    import psutil

    port = urlsplit(amqp_url).port or 5672
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return None
    pids = {c.pid for c in conns
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid}
    return sorted(pids) or None


def delete_namespace(amqp_url: str, namespace: str) -> bool:
    """Remove a run's durable queues and exchanges so repeated runs leave no litter on a
    shared broker. Best effort: clean-up never masks the run's own outcome."""
    import aio_pika

    from targets.queue.topology import delete_shared

    async def _delete() -> bool:
        try:
            connection = await aio_pika.connect(amqp_url, timeout=5)
            async with connection:
                await delete_shared(await connection.channel(), namespace)
        except Exception:
            return False
        return True

    with amqp_logs_off():  # a broker already gone is the caller's to report, once
        return _run_in_thread(_delete())


class RabbitMQ:
    """The registry's provider for the `rabbitmq` broker kind (see targets.registry.BrokerKind)."""

    name = "rabbitmq"
    ensure = staticmethod(ensure_broker)
    describe = staticmethod(describe)
    pids = staticmethod(broker_pids)
    delete_namespace = staticmethod(delete_namespace)


RABBITMQ = RabbitMQ()
