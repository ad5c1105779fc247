"""Shared fixtures: real processes over real sockets, all stopped by the end of each test.

`make test` runs the suite on two pytest-xdist workers (`-n 2`). What the workers share is
arranged here, so that parallel tests cannot collide:

- the broker: the system RabbitMQ when it answers; otherwise the controller starts one
  private node before the workers exist and hands them its URL (COMMBENCH_TEST_AMQP_URL),
  so a fresh machine runs one private broker, not one per worker;
- the real runs of tests/report_runs.py: their modules go to one worker together (see
  `pytest_xdist_make_scheduler`).

Everything else a test touches is its own: ports from the OS (port 0), folders under its
tmp_path, broker namespaces with a random or per-process token.

No test needs the machine to itself: every timing assertion is an ordering, a ratio or a
bound with a stated margin, and the one CPU comparison that a neighbour could move (the
queue's CPU per request with the broker included, on a broker the other worker may use too)
can only be raised by another test's traffic when the broker is counted, which is what it
checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import harness  # noqa: F401  (first: it turns gRPC's fork support off, harness/__init__.py)
from harness.stage.launcher import Launcher

TEST_AMQP_ENV = "COMMBENCH_TEST_AMQP_URL"  # read by the amqp_url fixture only, never by commbench
_controller = contextlib.ExitStack()  # what the xdist controller holds for the whole run


def pytest_configure(config: pytest.Config) -> None:
    workers = config.getoption("numprocesses", None) if config.pluginmanager.hasplugin(
        "xdist") else None
    if not workers or hasattr(config, "workerinput"):
        return
    # The controller, before any worker starts: one broker for all of them.
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


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: unknown to pytest without it
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


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL that answers: COMMBENCH_PG_URL (default the local one), else a private
    cluster stopped at session end."""
    from harness.stage.postgres import DEFAULT_URL, ensure_postgres

    url = os.environ.get("COMMBENCH_PG_URL", DEFAULT_URL)
    with ensure_postgres(url, tmp_path_factory.mktemp("pg")) as info:
        yield info.url


@pytest.fixture
def pg_store(pg_server: str) -> Iterator[str]:
    """A database of this test's own, dropped afterwards."""
    from harness.stage.postgres import scratch_database

    with scratch_database(pg_server) as url:
        yield url
