"""Shared fixtures: real processes over real sockets, all stopped by the end of each test."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.launcher import Launcher


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    """Starts `commbench serve` subprocesses; stops every one of them after the test."""
    with Launcher(tmp_path / "logs") as launcher:
        yield launcher
    # Nothing a test started may survive it.
    for service in launcher.services:
        assert not service.alive()


def run(coro):  # noqa: ANN001, ANN201
    """Run a coroutine on a fresh uvloop loop (the loop the engine uses)."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
