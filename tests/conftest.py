"""Shared fixtures: real processes over real sockets, all stopped by the end of each test.

`make test` runs the suite on two pytest-xdist workers (`-n 2`). What the workers share is
arranged here, so that parallel tests cannot collide:

- the broker: the system RabbitMQ when it answers; otherwise the controller starts one
  private node before the workers exist and hands them its URL (COMMBENCH_TEST_AMQP_URL),
  so a fresh machine runs one private broker, not one per worker;
- the machine: a test marked `exclusive` runs with no other test running (see
  `pytest_runtest_protocol`), for assertions that a neighbour's load would make meaningless;
- the real runs of tests/report_runs.py: their modules go to one worker together (see
  `pytest_xdist_make_scheduler`).

Everything else a test touches is its own: ports from the OS (port 0), folders under its
tmp_path, broker namespaces with a random or per-process token.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.stage.launcher import Launcher

TEST_AMQP_ENV = "COMMBENCH_TEST_AMQP_URL"  # read by the amqp_url fixture only, never by commbench
LOCK_DIR_ENV = "COMMBENCH_TEST_LOCK_DIR"  # the machine's locks, made by the xdist controller
# A test waits for the machine at most this long: two tests that each hit pytest-timeout.
MACHINE_WAIT_S = 2 * 300 + 60
_controller = contextlib.ExitStack()  # what the xdist controller holds for the whole run


def pytest_configure(config: pytest.Config) -> None:
    workers = config.getoption("numprocesses", None) if config.pluginmanager.hasplugin(
        "xdist") else None
    if not workers or hasattr(config, "workerinput"):
        return
    # The controller, before any worker starts: the machine's locks, and one broker for all.
    locks = tempfile.mkdtemp(prefix="commbench-test-locks-")
    _controller.callback(shutil.rmtree, locks, ignore_errors=True)
    os.environ[LOCK_DIR_ENV] = locks
    if TEST_AMQP_ENV not in os.environ:
        from harness.stage.broker import ensure_broker

        info = _controller.enter_context(ensure_broker(_suite_broker_url()))
        os.environ[TEST_AMQP_ENV] = info.url


def pytest_unconfigure(config: pytest.Config) -> None:
    _controller.close()


# Modules built on the real runs of tests/report_runs.py, which each process makes once and
# whose folders the tests write reports into: all on one worker, so the runs are made once
# and no two processes write into one folder. (Not by xdist_group marks: with pytest 9.2
# `--dist loadgroup` silently stops grouping, pytest-xdist issue 1386.)
SHARED_RUN_MODULES = frozenset(f"tests/{m}.py" for m in (
    "test_compare", "test_damaged", "test_report_browser", "test_reports"))


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """Each test its own unit of work, except SHARED_RUN_MODULES: one unit together."""
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "shared-report-runs" if module in SHARED_RUN_MODULES else nodeid

    return Scheduling(config, log)  # type: ignore[arg-type]


def _suite_broker_url() -> str:
    from targets.serving import AMQP_URL_ENV, DEFAULT_AMQP_URL

    return os.environ.get(AMQP_URL_ENV, DEFAULT_AMQP_URL)


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    """Starts `commbench serve` subprocesses; stops every one of them after the test."""
    with Launcher(tmp_path / "logs") as launcher:
        yield launcher
    # Nothing a test started may survive it.
    for service in launcher.services:
        assert not service.alive()


def run(coro):
    """Run a coroutine on a fresh uvloop loop (the loop the engine uses)."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


@pytest.fixture(scope="session")
def amqp_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker URL that answers: the one the xdist controller found or started, else the
    system RabbitMQ at COMMBENCH_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/) if it
    answers, else a private node stopped at session end."""
    from harness.stage.broker import ensure_broker

    url = os.environ.get(TEST_AMQP_ENV) or _suite_broker_url()
    with ensure_broker(url, tmp_path_factory.mktemp("broker")) as info:
        yield info.url


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Under xdist, every test holds a shared lock on the machine and an `exclusive` test an
    exclusive one, so an exclusive test runs alone. The lock spans the whole protocol, so
    module and session fixtures set up or torn down with a test (a shared real run) are
    covered too. A turnstile lock taken first keeps a waiting exclusive test from being
    overtaken again and again by the other worker's next test. Without xdist there is
    nothing to share."""
    folder = os.environ.get(LOCK_DIR_ENV)
    if folder is None or "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    exclusive = item.get_closest_marker("exclusive") is not None
    with open(Path(folder) / "turnstile", "a") as turnstile, \
            open(Path(folder) / "machine", "a") as machine:
        _lock(turnstile, fcntl.LOCK_EX)
        try:
            _lock(machine, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(machine, fcntl.LOCK_UN)


def _lock(f, kind: int) -> None:
    """flock with a deadline of its own (polled: flock has no timeout)."""
    deadline = time.monotonic() + MACHINE_WAIT_S
    while True:
        try:
            fcntl.flock(f, kind | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise AssertionError(f"the machine was not free within {MACHINE_WAIT_S} s") from None
            time.sleep(0.05)  # pacing of the poll of another worker's lock
