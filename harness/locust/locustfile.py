"""Locust users that drive the project's own async clients, and the hooks that write a
commbench result folder for every locust test.

Started by `commbench locust SCENARIO --target NAME` (which sets COMMBENCH_LOCUST and runs
`python -m locust -f harness/locust/locustfile.py`); this file is only ever imported by locust, so
gevent's monkey-patching stays inside that process.

One parameterised user class, `OrderUser`: the transport and client variant come from the
command line, the URL from locust's host (the web UI's host field may point it at another
target of the same transport; left empty, it means the target the command staged; a host
that is no target of the transport stops the test with one line, see clients.py). User n
draws its requests exactly as the closed-loop user n of `commbench run` does
(harness.load.workload, stream `user/n`), so the operation mix is the scenario's
[operations] weights and the same seed sends the same requests. The operation is drawn by
the workload, not by locust's task weights: two draws would break that match.
Locust's statistics name requests `get`, `list` and `create`.

Process roles: the local runner records and writes; a worker records and sends each closed
second to the master (locust custom messages); the master merges and writes. The master's
warm-up and time base are the test's (sent to the workers at its start). When a test stops,
the master first asks its workers to stop their users and flush (`commbench_stop`): each
worker closes its open seconds, sends them, its final locust stats and `commbench_done`;
the master waits for every worker's `commbench_done` (at most FINAL_WAIT_S) before it lets
locust go on stopping, which on a headless master otherwise kills its message loop 0.5 s
after telling the workers to quit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
from gevent.event import Event
from locust import User, constant, events, task
from locust.env import Environment
from locust.runners import (
    STATE_MISSING,
    STATE_RUNNING,
    STATE_SPAWNING,
    LocalRunner,
    MasterRunner,
    Runner,
    WorkerRunner,
)

from harness.load.recorder import NS
from harness.load.workload import Workload
from harness.locust.bridge import get_bridge
from harness.locust.calls import UnusableHost, send
from harness.locust.clients import Clients
from harness.locust.node import (
    MESSAGE_DONE,
    MESSAGE_SECOND,
    MESSAGE_START,
    MESSAGE_STOP,
    LocustConfig,
    NodeRecorder,
    error_kind,
    from_wire,
    to_wire,
)
from harness.locust.results import ResultCollector
from targets.registry import get_transport

log = logging.getLogger("commbench")
CONFIG = LocustConfig.from_env()
SCENARIO = CONFIG.scenario()
TRANSPORT = get_transport(CONFIG.transport)
RECORD_ACCEPTED = TRANSPORT.accepted_moment
WORKER_USER_BLOCK = 1_000_000  # worker i numbers its users i*1e6 + n (worker 0 = commbench run)
FINAL_WAIT_S = 10.0  # the master waits this long for the workers' last seconds


class _Process:
    """What one locust process keeps: its clients, its recorder and/or collector."""

    def __init__(self) -> None:
        self.clients = Clients(TRANSPORT, CONFIG.variant, SCENARIO.load.timeout_s)
        self.runner: Runner | None = None
        self.environment: Environment | None = None
        self.node: NodeRecorder | None = None
        self.collector: ResultCollector | None = None
        self.users = 0
        self.prefix = "lc"
        self.master_start: dict[str, Any] | None = None
        self.ticker: gevent.Greenlet | None = None
        self.finalizer: gevent.Greenlet | None = None
        self.all_done = Event()
        self.stop_ns: int | None = None  # master: when the test began stopping
        self.interrupted = False

    def next_user(self) -> int:
        n = self.users
        self.users += 1
        if isinstance(self.runner, WorkerRunner):
            n += max(0, self.runner.worker_index) * WORKER_USER_BLOCK
        return n

    # -- roles -------------------------------------------------------------------------

    def setup(self, environment: Environment) -> None:
        runner = environment.runner
        self.environment, self.runner = environment, runner
        if isinstance(runner, WorkerRunner):
            self.node = NodeRecorder(
                lambda rec: runner.send_message(MESSAGE_SECOND, to_wire(rec)))
            runner.register_message(MESSAGE_START, self._on_master_start)
            runner.register_message(MESSAGE_STOP, self._on_master_stop)
        elif isinstance(runner, MasterRunner):
            self.collector = ResultCollector(CONFIG, environment.host or "", "master")
            runner.register_message(MESSAGE_SECOND, self._on_second)
            runner.register_message(MESSAGE_DONE, self._on_done)
        elif isinstance(runner, LocalRunner):
            collector = self.collector = ResultCollector(CONFIG, environment.host or "", "local")
            self.node = NodeRecorder(lambda rec: collector.add("local", rec))
        events = environment.events
        events.request.add_listener(self._on_request)
        events.test_start.add_listener(self._on_test_start)
        events.test_stopping.add_listener(self._on_test_stopping)
        events.test_stop.add_listener(self._on_test_stop)
        events.quitting.add_listener(self._on_quitting)
        events.quit.add_listener(self._on_quit)

    def _on_master_start(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.master_start = dict(msg.data)

    def _on_master_stop(self, environment: Environment, msg: Any, **_: Any) -> None:
        """Stop the users now: their test_stop flushes this worker's seconds (see
        _on_test_stop) while the master still listens."""
        if self.node is not None and self.node.active and self.runner is not None:
            self.runner.stop()

    def _on_second(self, environment: Environment, msg: Any, **_: Any) -> None:
        if self.collector is not None:
            self.collector.add(msg.node_id, from_wire(msg.data))

    def _on_done(self, environment: Environment, msg: Any, **_: Any) -> None:
        if self.collector is not None:
            self.collector.node_done(msg.node_id, msg.data)
            if self.collector.test is not None and not self.collector.waiting_for:
                self.all_done.set()

    # -- events ------------------------------------------------------------------------

    def _on_request(self, request_type: str, name: str, response_time: float,
                    response_length: int, exception: BaseException | None = None,
                    context: dict[str, Any] | None = None, **_: Any) -> None:
        node = self.node
        if node is None:
            return
        out = (context or {}).get("commbench")
        if out is not None:
            service_ns, done_ns = out.service_ns, out.done_epoch_ns
        else:  # a request some other code fired: locust's millisecond figure is all there is
            service_ns, done_ns = round(response_time * 1e6), time.time_ns()
        node.request(name, error_kind(exception), service_ns, done_ns,
                     (context or {}).get("accepted_ns"))

    def _on_test_start(self, environment: Environment, **_: Any) -> None:
        now = time.time_ns()
        self.users = 0
        self.interrupted = False
        self.clients.new_test()
        runner = self.runner
        if isinstance(runner, MasterRunner):
            assert self.collector is not None
            nodes = [c.id for c in runner.clients.all if c.state != STATE_MISSING]
            token = f"{now // 1_000_000:x}"
            self.collector.url = host_of(environment)
            self.collector.begin(now, nodes)
            self.all_done.clear()
            runner.send_message(MESSAGE_START, {"epoch_ns": now, "token": token,
                                                "warmup_s": self.collector.warmup_s})
        elif isinstance(runner, WorkerRunner):
            start = self.master_start or {"epoch_ns": now, "token": f"{now // 1_000_000:x}"}
            self.master_start = None
            self.prefix = f"lc{start['token']}-w{max(0, runner.worker_index)}"
            assert self.node is not None
            # the master's warm-up, not this command's: seconds must mean the same everywhere
            self.node.begin(int(start["epoch_ns"]),
                            float(start.get("warmup_s", CONFIG.warmup(SCENARIO))))
        else:
            assert self.node is not None and self.collector is not None
            self.prefix = f"lc{now // 1_000_000:x}"
            self.collector.url = host_of(environment)
            self.collector.begin(now, ["local"])
            self.node.begin(now, CONFIG.warmup(SCENARIO))
        self._start_ticker()

    def _on_test_stopping(self, environment: Environment, **_: Any) -> None:
        """Master: have every worker of the test stop and flush, and wait for them (bounded),
        so that no worker's last seconds arrive after the master stopped listening."""
        runner, collector = self.runner, self.collector
        if not isinstance(runner, MasterRunner) or collector is None or collector.test is None:
            return
        self.stop_ns = time.time_ns()
        for node in collector.waiting_for:
            runner.send_message(MESSAGE_STOP, None, client_id=node)
        if gevent.getcurrent() in runner.greenlet:
            return  # stopping from locust's own message loop: waiting here would block it
        deadline = time.monotonic() + FINAL_WAIT_S
        while collector.waiting_for and time.monotonic() < deadline:
            self.all_done.wait(1.0)
            alive = {c.id for c in runner.clients.all if c.state != STATE_MISSING}
            for node in collector.waiting_for - alive:  # quit or lost: no more seconds
                collector.node_gone(node)

    def _on_test_stop(self, environment: Environment, **_: Any) -> None:
        stop_ns = time.time_ns()
        self._stop_ticker()
        runner = self.runner
        if isinstance(runner, WorkerRunner):
            assert self.node is not None
            if self.node.active:
                info = self.node.end()  # sends the open seconds to the master
                # locust's own final report before commbench_done, so the master's locust
                # statistics are complete when it writes (locust's reports are increments)
                send_stats = getattr(runner, "_send_stats", None)
                if send_stats is not None:
                    send_stats()
                runner.send_message(MESSAGE_DONE, info)
        elif isinstance(runner, MasterRunner):
            collector = self.collector
            assert collector is not None
            if collector.test is None:
                return
            stop_ns, self.stop_ns = self.stop_ns or stop_ns, None
            if not collector.waiting_for:
                self._write(stop_ns)
                return
            self.finalizer = gevent.spawn(self._finalize_when_done, stop_ns)
        else:
            assert self.node is not None and self.collector is not None
            if self.node.active:
                self.collector.node_done("local", self.node.end())
            self._write(stop_ns)

    def _finalize_when_done(self, stop_ns: int) -> None:
        self.all_done.wait(FINAL_WAIT_S)
        self._write(stop_ns)

    def _on_quitting(self, environment: Environment, **_: Any) -> None:
        # SIGTERM / Ctrl-C arrives here while a test may still run: mark it partial.
        runner = self.runner
        if runner is not None and runner.state in (STATE_RUNNING, STATE_SPAWNING):
            self.interrupted = True

    def _on_quit(self, exit_code: int, **_: Any) -> None:
        """The end of the process: finish a result still open, close the clients."""
        if self.finalizer is not None and not self.finalizer.dead:
            self.finalizer.kill(block=True)  # no worker message can arrive any more
            self._write(time.time_ns())
        self._stop_ticker()
        self.clients.close()

    # -- helpers -------------------------------------------------------------------------

    def _write(self, stop_ns: int) -> None:
        collector = self.collector
        if collector is None or collector.test is None:
            return
        warnings: list[str] = []
        runner = self.runner
        if runner is not None:  # the users at the stop (they are gone by now)
            collector.users(sum(getattr(runner, "final_user_classes_count", {}).values()))
        if runner is not None and getattr(runner, "cpu_warning_emitted", False):
            warnings.append("locust's CPU went above 90 %: the load generator may have "
                            "limited the figures")
        if self.clients.stopped_for is not None:
            warnings.append(self.clients.stopped_for)
        path = collector.finish(stop_ns, status="partial" if self.interrupted else "complete",
                                extra_warnings=warnings, locust_stats=self._locust_stats())
        log.info("commbench: results in %s", path)

    def _locust_stats(self) -> dict[str, Any]:
        if self.runner is None:
            return {}
        stats = self.runner.stats
        return {
            "num_requests": stats.total.num_requests,
            "num_failures": stats.total.num_failures,
            "requests": {name: {"num_requests": e.num_requests, "num_failures": e.num_failures}
                         for (name, _method), e in stats.entries.items()},
        }

    def _start_ticker(self) -> None:
        self._stop_ticker()
        self.ticker = gevent.spawn(self._tick_loop)

    def _stop_ticker(self) -> None:
        ticker, self.ticker = self.ticker, None
        if ticker is not None and ticker is not gevent.getcurrent():
            ticker.kill(block=True)

    def _tick_loop(self) -> None:
        """Once a second, just after each second ends: close recorded seconds, sample the
        target, follow the workers."""
        while True:
            now = time.time_ns()
            if self.node is not None:
                self.node.tick(now)
            collector = self.collector
            if collector is not None and collector.test is not None:
                collector.probe(now)
                runner = self.runner
                if runner is not None:
                    collector.users(runner.user_count)
                if isinstance(runner, MasterRunner):
                    alive = {c.id for c in runner.clients.all if c.state != STATE_MISSING}
                    for node in collector.waiting_for - alive:
                        collector.node_gone(node)
            gevent.sleep((NS - now % NS) / NS + 0.01)


STATE = _Process()


def host_of(environment: Environment) -> str:
    """The test's host: the web UI's Host field (or --host); empty means the target this
    command staged (or reached with --url)."""
    return environment.host or CONFIG.url or ""


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    STATE.setup(environment)


class OrderUser(User):
    """A virtual user of the order service, through the project's client for the target's
    transport; think time is the scenario's (closed-loop scenarios), else none."""

    wait_time: Callable[..., float] = constant(SCENARIO.load.think_time_s)

    def on_start(self) -> None:
        n = STATE.next_user()
        self.workload = Workload(SCENARIO.operations, SCENARIO.data, f"{STATE.prefix}-u{n}",
                                 f"user/{n}")
        self.k = 0

    @task
    def order_request(self) -> None:
        req = self.workload.draw(self.k)
        assert req is not None
        self.k += 1
        host = host_of(self.environment)
        try:
            client = STATE.clients.get(host)
        except UnusableHost as exc:
            STATE.clients.stop_for(self.environment, host, str(exc))
        out = get_bridge().timed(send(client, req, RECORD_ACCEPTED))
        accepted = out.value if out.error is None else None
        self.environment.events.request.fire(
            request_type=CONFIG.transport, name=req.op, response_time=out.service_ns / 1e6,
            response_length=0, response=None, exception=out.error,
            context={"commbench": out, "accepted_ns": accepted}, url=None,
            start_time=(out.done_epoch_ns - out.service_ns) / NS)
