"""Shared fixtures: real processes over real sockets, all stopped by the end of each test."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.stage.launcher import Launcher


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
    """A broker URL that answers: the system RabbitMQ at COMMBENCH_AMQP_URL (default
    amqp://guest:guest@127.0.0.1:5672/) if it does, else a private node stopped at session end."""
    import os

    from harness.stage.broker import ensure_broker
    from targets.serving import DEFAULT_AMQP_URL

    url = os.environ.get("COMMBENCH_AMQP_URL", DEFAULT_AMQP_URL)
    with ensure_broker(url, tmp_path_factory.mktemp("broker")) as info:
        yield info.url
