"""`commbench locust` refuses bad options before it starts anything, and SIGTERM exits 143
(the issue's case 9), with the helpers of tests/test_locust.py."""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from harness.locust.checks import timespan_s
from tests.procs import still_running
from tests.test_locust import (
    ROOT,
    SCENARIO,
    commbench_locust,
    env_with,
    survivors,
)


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "locust-tiny.toml"
    path.write_text(SCENARIO)
    return path


@pytest.fixture
def mark() -> Iterator[str]:
    """As in test_locust.py: no process carrying the marker may outlive the test."""
    value = uuid.uuid4().hex
    yield value
    alive = still_running(survivors(value), timeout=10)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    assert not alive, f"processes outlived the test: {[p.pid for p in alive]}"


@pytest.mark.parametrize("args, said", [
    (["-t", "abc"], "-t/--run-time 'abc': use locust's format"),
    (["-t", "500ms"], "-t/--run-time '500ms': use locust's format"),  # 500 minutes to locust
    (["-u", "0"], "-u/--users must be from 1 to 100,000, got 0: no user would send"),
    (["-r", "0"], "-r/--spawn-rate must be more than 0"),
    (["--", "--no-such-option"], "locust refuses these arguments: unrecognized arguments: "
                                 "--no-such-option"),
])
def test_bad_locust_options_are_refused_before_anything_starts(
        tmp_path: Path, scenario: Path, mark: str, args: list[str], said: str) -> None:
    """They used to start the target and run the gate first, then fail with locust's
    argparse text (and, for -u 0, a complaint about an -r that was never given)."""
    results = tmp_path / "results"
    started = time.monotonic()
    r = subprocess.run(commbench_locust(scenario, results, "--target", "rest", "--headless",
                                        *args),
                       env=env_with(mark), capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"commbench: {said}"), lines
    assert "usage:" not in r.stderr and "--spawn-rate" not in r.stderr.replace(said, "")
    assert not (results / ".logs").exists()  # no target was started, no log opened
    assert time.monotonic() - started < 30


def test_locust_time_spans_are_read_as_locust_reads_them() -> None:
    assert [timespan_s(t) for t in ("20", "20s", "3m", "1h20m", "3h30m10s")] \
        == [20, 20, 180, 4800, 12610]
    assert [timespan_s(t) for t in ("abc", "500ms", "1.5s", "", "s", "20s junk")] == [None] * 6
