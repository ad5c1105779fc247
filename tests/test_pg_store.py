"""The core's order store on PostgreSQL, on real servers: REST, gRPC and the queue pass the
conformance suite with their orders in a PostgreSQL schema, and `run --store postgresql://…`
compares all four targets on one database and leaves no schema behind. The PostgreSQL is
COMMBENCH_PG_URL's when it answers, else a private cluster; each test uses a database of its
own, dropped afterwards, and a broker namespace of its own, deleted afterwards."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.stage.broker import delete_namespace
from harness.stage.launcher import Launcher
from harness.stage.verify import run_verify
from targets.registry import TRANSPORTS, Transport
from targets.serving import ServeConfig
from tests.conftest import run
from tests.test_conformance import SEED, assert_conformant
from tests.test_eventsourced import COMMBENCH, _schemas

CORE_TARGETS = ("rest", "grpc", "queue")


@pytest.fixture
def ns(amqp_url: str) -> Iterator[str]:
    name = f"cbtest-pg-{uuid.uuid4().hex[:8]}"
    yield name
    delete_namespace(amqp_url, name)


async def _orders_in(url: str, schema: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(f"SELECT COUNT(*) FROM {schema}.orders"))
    finally:
        await conn.close()


@pytest.mark.parametrize("transport", CORE_TARGETS)
def test_conformance_on_postgresql(launcher: Launcher, pg_store: str, amqp_url: str, ns: str,
                                   transport: str) -> None:
    """Every check passes, and the orders are rows of the schema (not some other store)."""
    schema = f"cb_test_{transport}"
    config = ServeConfig(store=f"{pg_store}?schema={schema}", seed=SEED, amqp_url=amqp_url,
                         namespace=ns)
    url = launcher.start(transport, config).url
    assert_conformant(transport, url)
    assert run(_orders_in(pg_store, schema)) > SEED.total  # seeded, and the checks' creates
    launcher.services[-1].stop()


ALL_FOUR = """
name = "tiny-pg"
description = "two seconds of lookups and creates on every target"
targets = ["rest", "grpc", "queue", "eventsourced"]
duration = "2s"
warmup = "0s"

[data]
users = 20
orders_per_user = 5

[load]
model = "open"
rate = 100
timeout = "5s"

[operations]
get = 6
list = 2
create = 2
"""


def test_a_short_run_on_postgresql_includes_all_four(tmp_path: Path, pg_store: str,
                                                     amqp_url: str) -> None:
    scenario = tmp_path / "tiny-pg.toml"
    scenario.write_text(ALL_FOUR)
    results = tmp_path / "results"
    proc = subprocess.run([COMMBENCH, "run", str(scenario), "--store", pg_store,
                           "--amqp-url", amqp_url, "--results-dir", str(results)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = results.iterdir()
    meta = json.loads((run_dir / "run.json").read_text())
    assert {t["name"]: t["status"] for t in meta["targets"]} == {
        "rest": "ok", "grpc": "ok", "queue": "ok", "eventsourced": "ok"}
    assert meta["arguments"]["store"] == pg_store
    assert _schemas(pg_store) == []  # each target run's schema was dropped when it stopped


def test_a_store_a_transport_does_not_take_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path, pg_store: str) -> None:
    """The registry's `stores` still decides (a transport that keeps SQLite only)."""
    sqlite_only = Transport("sqlite-only", "REST that declares no PostgreSQL store",
                            {"uvicorn": "targets.rest.server:serve"},
                            {"aiohttp": "targets.rest.client_aiohttp:connect"},
                            stores=("memory", "sqlite"))
    monkeypatch.setitem(TRANSPORTS, "sqlite-only", sqlite_only)
    with pytest.raises(UserError, match="--store: sqlite-only takes the stores memory, "
                                        "sqlite, not 'postgresql'"):
        run_verify(["sqlite-only"], urls={}, clients={}, amqp_url="", log_dir=tmp_path,
                   store=pg_store)
