"""The clients of one locust process: one per host (as `commbench run` has one per process),
opened on the bridge's asyncio loop, and the one-line stop of a test whose host cannot be
used. Import only inside a locust process: it imports gevent and locust."""

from __future__ import annotations

import logging
from typing import NoReturn

import gevent
from gevent.lock import Semaphore
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import WorkerRunner

from harness.locust.bridge import get_bridge, stop_bridge
from harness.locust.calls import UnusableHost, open_client
from targets.api import OrderClient
from targets.registry import Transport, resolve

CLOSE_TIMEOUT_S = 5.0
log = logging.getLogger("commbench")


class Clients:
    """Clients by host; a host that cannot be used is refused once per test, not per task."""

    def __init__(self, transport: Transport, variant: str, timeout: float) -> None:
        self.transport, self.variant, self.timeout = transport, variant, timeout
        self.clients: dict[str, OrderClient] = {}
        self._lock = Semaphore()
        self._setup_done = False
        self.refused: dict[str, str] = {}  # host → why it cannot be used (this test)
        self.stopped_for: str | None = None  # the message the test was stopped with

    def new_test(self) -> None:
        """A host refused in an earlier test may answer now."""
        self.refused, self.stopped_for = {}, None

    def get(self, url: str) -> OrderClient:
        """The client for `url`; UnusableHost when the host is no target of this transport."""
        c = self.clients.get(url)
        if c is not None:
            return c
        with self._lock:
            c = self.clients.get(url)
            if c is None:
                if url in self.refused:
                    raise UnusableHost(self.refused[url])
                bridge = get_bridge()
                if self.transport.gevent_setup and not self._setup_done:
                    bridge.call(resolve(self.transport.gevent_setup)())
                    self._setup_done = True
                factory = self.transport.client_factory(self.variant)
                try:
                    c = bridge.call(open_client(factory, url, self.timeout))
                except UnusableHost as exc:
                    self.refused[url] = str(exc)
                    raise
                self.clients[url] = c
        return c

    def stop_for(self, environment: Environment, host: str, reason: str) -> NoReturn:
        """Log one line and stop the test (quit when headless), from a greenlet of its own as
        the web UI's Stop does; every user stops quietly (StopUser). locust's StopTest would
        only stop the user that raised it when raised in a task. A worker stops its users
        only: the test is the master's."""
        if self.stopped_for is None:
            self.stopped_for = (f"host {host!r} cannot be used for {self.transport.name}: "
                                f"{reason}; the test was stopped")
            log.error("commbench: %s", self.stopped_for)
            runner = environment.runner
            if runner is not None and not isinstance(runner, WorkerRunner):
                headless = getattr(environment.parsed_options, "headless", False)
                gevent.spawn(runner.quit if headless else runner.stop)
        raise StopUser()

    def close(self) -> None:
        clients, self.clients = self.clients, {}
        if clients:
            bridge = get_bridge()
            for c in clients.values():
                try:
                    bridge.call(c.close(), timeout=CLOSE_TIMEOUT_S)
                except Exception as exc:  # closing must not stop the others closing
                    log.warning("closing the %s client: %s", self.transport.name, exc)
        stop_bridge()
