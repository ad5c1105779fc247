"""A run killed by SIGKILL on a PostgreSQL store leaves its target's schema behind, and its
record of it: `commbench clean` drops the schema given the server's URL, and keeps the run's
folder (the record) until it can. On a real PostgreSQL (the fixtures of test_eventsourced)."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from harness.run.abandoned import MARKER
from tests.test_eventsourced import TINY, _schemas, pg_server, pg_store  # noqa: F401
from tests.test_survive import COMMBENCH, finish, measured_second, read_until, start, wait_for


def test_clean_drops_the_schema_of_a_sigkilled_run(tmp_path: Path, pg_store: str) -> None:  # noqa: F811
    scenario = tmp_path / "long-es.toml"
    scenario.write_text(TINY.replace('duration = "2s"', 'duration = "60s"')
                        .replace('["rest", "eventsourced"]', '["eventsourced"]'))
    results = tmp_path / "results"
    proc = start(["run", str(scenario), "--store", pg_store, "--results-dir", str(results)])
    read_until(proc, "load on eventsourced r1")
    wait_for("a measured second", lambda: measured_second(results, "eventsourced"), 30, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    finish(proc)
    (partial,) = results.glob(".partial-*")
    (schema,) = _schemas(pg_store)
    assert f'"schema": "{schema}"' in (partial / MARKER).read_text()

    def clean(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([COMMBENCH, "clean", "--results-dir", str(results), "--remove",
                               *args], capture_output=True, text=True, timeout=60)

    p = clean()  # no --store: the schema cannot be dropped, so the record is kept
    assert p.returncode == 1 and "1 PostgreSQL schema(s)" in p.stdout
    assert f"schema {schema} is on" in p.stdout and "--store" in p.stdout
    assert partial.exists() and _schemas(pg_store) == [schema]
    p = clean("--store", pg_store)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"dropped PostgreSQL schema {schema}" in p.stdout and f"removed {partial}" in p.stdout
    assert _schemas(pg_store) == [] and not partial.exists()
