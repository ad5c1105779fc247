"""The eventsourced target on real processes and real databases: SQLite files and
PostgreSQL (the one at COMMBENCH_PG_URL when it answers, else a private cluster), each test
on a database of its own that it drops afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from harness.stage.conformance import checks_for
from harness.stage.launcher import Launcher
from harness.stage.postgres import (
    private_postgres,
    problem,
    scratch_database,
)
from targets.core.errors import TransportError
from targets.core.model import STATUS_PAID, STATUS_SHIPPED, CreateOrder, ItemRequest
from targets.core.seed import SeedSpec
from targets.eventsourced.client import connect
from targets.eventsourced.events import order_created, status_changed
from targets.eventsourced.log import ConcurrencyConflict, open_log
from targets.eventsourced.projection import replay
from targets.registry import TRANSPORTS
from targets.serving import ServeConfig
from tests.conftest import run
from tests.procs import read_until, wait_until

COMMBENCH = str(Path(sys.executable).parent / "commbench")
SEED = SeedSpec(users=10, orders_per_user=5, seed=3)
ES = TRANSPORTS["eventsourced"]
ALL_CHECKS = (len(checks_for(ES)) + 1) * len(ES.clients)  # + "reach the target", per client
SETTLE_S = 10.0  # deadline for the projection to catch up with the log


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'events.sqlite'}"
    return str(request.getfixturevalue("pg_store"))


@pytest.fixture
def served(amqp_url: str) -> Iterator[ServeConfig]:
    """The server's broker settings: the suite's broker and a namespace of this test's own
    (the outbox publishes there), deleted afterwards."""
    from harness.stage.broker import delete_namespace

    ns = f"cbtest-es-{uuid.uuid4().hex[:8]}"
    yield ServeConfig(amqp_url=amqp_url, namespace=ns, seed=SEED)
    delete_namespace(amqp_url, ns)


def verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COMMBENCH, "verify", "--targets", "eventsourced", *args],
                          capture_output=True, text=True, timeout=180)


# -- commbench verify ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_verify_passes_on_sqlite(kind: str, tmp_path: Path) -> None:
    proc = verify("--store", kind, "--logs", str(tmp_path / "logs"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "temporal query" in proc.stdout
    assert f"conformance: all {ALL_CHECKS} checks passed" in proc.stdout


def test_verify_passes_on_postgresql_and_drops_its_schema(pg_store: str, tmp_path: Path) -> None:
    proc = verify("--store", pg_store, "--logs", str(tmp_path / "logs"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"conformance: all {ALL_CHECKS} checks passed" in proc.stdout

    assert _schemas(pg_store) == []


def test_a_private_cluster_serves_the_target_and_leaves_nothing(tmp_path: Path) -> None:
    """The path a machine without PostgreSQL takes: initdb, our own postmaster, stopped."""
    with private_postgres(tmp_path / "pg") as info:
        assert info.private and info.data_dir is not None
        assert problem(info.url) is None
        base = info.data_dir.parent
        pid = int((info.data_dir / "postmaster.pid").read_text().split()[0])
        with scratch_database(info.url) as url:
            proc = verify("--store", url, "--logs", str(tmp_path / "logs"))
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not base.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert problem(info.url, timeout=1.0) is not None


HOLD_CLUSTER = """
import sys
from harness.stage.postgres import private_postgres
with private_postgres() as info:
    print("URL", info.url, info.data_dir, flush=True)
    sys.stdin.read()  # held until the test kills us
"""


def test_a_private_cluster_dies_with_a_sigkilled_owner() -> None:
    """Nothing can run on SIGKILL: the parent-death signal takes the postmaster down."""
    import shutil
    import signal

    proc = subprocess.Popen([sys.executable, "-c", HOLD_CLUSTER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _, url, data_dir = read_until(proc, "URL ", 60).split()[-3:]
        pid = int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_until(lambda: not _alive(pid), 10, "the postmaster exits with its owner")
        wait_until(lambda: problem(url, timeout=1.0) is not None, 10, "the port closes")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if "data_dir" in locals():
            shutil.rmtree(Path(data_dir).parent, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for init counts as gone
        return f.read().split()[2] != "Z"


@pytest.mark.parametrize("store_arg, says", [
    ("postgresql://postgres@127.0.0.1:1/postgres", "does not answer"),
    ("postgresql://no-such-role@127.0.0.1:1/x", "does not answer"),
    ("mysql://x", "takes the stores"),
])
def test_a_bad_store_is_one_line(store_arg: str, says: str) -> None:
    proc = verify("--store", store_arg)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_serve_with_an_unreachable_database_is_one_line() -> None:
    proc = subprocess.run([COMMBENCH, "serve", "eventsourced", "--store",
                           "postgresql://postgres@127.0.0.1:1/postgres"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("commbench: cannot use the PostgreSQL store")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


# -- the log: optimistic concurrency ------------------------------------------------------------

def test_a_stale_append_is_refused_never_overwritten(store: str) -> None:
    async def scenario() -> None:
        log = await open_log(store)
        try:
            from targets.core.model import Item, Order

            order = Order(0, 1, (Item("SKU-001", 1, 499),), 499, "created", 1_000, "r-1")
            sid, first = await log.create_stream(order_created(order))
            assert first is not None and first.version == 1
            again, none = await log.create_stream(order_created(order))
            assert (again, none) == (sid, None)  # the request id appends nothing
            await log.append(sid, 1, [status_changed(STATUS_PAID, 2_000)])
            with pytest.raises(ConcurrencyConflict):  # a writer that read version 1
                await log.append(sid, 1, [status_changed(STATUS_SHIPPED, 3_000)])
            with pytest.raises(ConcurrencyConflict):  # ahead of the stream: no gap either
                await log.append(sid, 5, [status_changed(STATUS_SHIPPED, 3_000)])
            # Racing writers with the same expected version: exactly one wins.
            outcomes = await asyncio.gather(
                *(log.append(sid, 2, [status_changed(s, 4_000)])
                  for s in (STATUS_SHIPPED, "cancelled", "delivered")),
                return_exceptions=True)
            assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
            assert all(isinstance(o, ConcurrencyConflict) for o in outcomes
                       if isinstance(o, BaseException))
            events = await log.read_stream(sid)
            assert [e.version for e in events] == [1, 2, 3]
            assert events[1].data == {"status": STATUS_PAID}
        finally:
            await log.close()

    run(scenario())


def test_a_stale_status_change_is_refused_over_the_wire(launcher: Launcher, store: str,
                                                       served: ServeConfig) -> None:
    url = launcher.start("eventsourced", replace(served, store=store)).url

    async def scenario() -> None:
        client = await connect(url)
        try:
            made = await client.create_order(
                CreateOrder("wire-1", 2, (ItemRequest("SKU-002", 1),)))
            paid, version = await client.change_status(made.id, STATUS_PAID, expected_version=1)
            assert (paid.status, version) == (STATUS_PAID, 2)
            with pytest.raises(TransportError) as stale:
                await client.change_status(made.id, STATUS_SHIPPED, expected_version=1)
            assert stale.value.kind == "conflict"
            events = await client.events(made.id)
            assert [e["data"].get("status") for e in events[1:]] == [STATUS_PAID]
            _, version = await client.change_status(made.id, STATUS_SHIPPED)  # no expectation
            assert version == 3
        finally:
            await client.close()

    run(scenario())


# -- the read model: replay equals the live projection ------------------------------------------

async def _settled(client: object) -> dict[str, int]:
    deadline = time.monotonic() + SETTLE_S
    while True:
        state = await client.projection()  # type: ignore[attr-defined]
        if state["lag"] == 0 or time.monotonic() > deadline:
            return state
        await asyncio.sleep(0.01)


async def _read_model(client: object, last_id: int) -> dict[int, dict[str, object]]:
    orders = await asyncio.gather(*(client.get_order(i) for i in range(1, last_id + 1)))  # type: ignore[attr-defined]
    return {o.id: o.to_dict() for o in orders}


def test_replay_gives_the_live_projection(launcher: Launcher, store: str,
                                          served: ServeConfig) -> None:
    config = replace(served, store=store)
    url = launcher.start("eventsourced", config, name="first").url

    async def live() -> tuple[dict[int, dict[str, object]], dict[str, int]]:
        client = await connect(url)
        try:
            made = await asyncio.gather(*(
                client.create_order(CreateOrder(f"replay-{n}", n % 7 + 1,
                                                (ItemRequest("SKU-003", n + 1),)))
                for n in range(60)))
            await asyncio.gather(*(client.change_status(o.id, STATUS_PAID) for o in made[::2]))
            await asyncio.gather(*(client.change_status(o.id, STATUS_SHIPPED) for o in made[::4]))
            state = await _settled(client)
            return await _read_model(client, max(o.id for o in made)), state
        finally:
            await client.close()

    live_model, state = run(live())
    assert state["lag"] == 0 and state["orders"] == SEED.total + 60

    async def replayed() -> dict[int, dict[str, object]]:
        log = await open_log(store)
        try:
            model = await replay(log)
        finally:
            await log.close()
        return {oid: o.to_dict() for oid, o in model.orders.items()}

    assert run(replayed()) == live_model
    statuses = [o["status"] for o in live_model.values()]
    assert statuses.count(STATUS_SHIPPED) >= 15  # the changes are in it, not only creates

    # A restarted server rebuilds the same read model from the log on start.
    launcher.services[-1].stop()
    again = launcher.start("eventsourced", config, name="second").url

    async def restarted() -> dict[int, dict[str, object]]:
        client = await connect(again)
        try:
            assert (await client.projection())["lag"] == 0
            return await _read_model(client, max(live_model))
        finally:
            await client.close()

    assert run(restarted()) == live_model


# -- commbench run ------------------------------------------------------------------------------

TINY = """
name = "tiny-es"
description = "two seconds of lookups and creates"
targets = ["rest", "eventsourced"]
duration = "2s"
warmup = "0s"

[data]
users = 20
orders_per_user = 5
store = "sqlite"

[load]
model = "open"
rate = 100
timeout = "5s"

[operations]
get = 6
list = 2
create = 2
"""


def _schemas(url: str) -> list[str]:
    async def fetch() -> list[str]:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            return [r[0] for r in await conn.fetch("SELECT schema_name FROM "
                                                   "information_schema.schemata WHERE "
                                                   "schema_name LIKE 'cb_%'")]
        finally:
            await conn.close()

    return list(run(fetch()))


def test_a_short_run_includes_eventsourced(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny-es.toml"
    scenario.write_text(TINY)
    results = tmp_path / "results"
    proc = subprocess.run([COMMBENCH, "run", str(scenario), "--results-dir", str(results)],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = results.iterdir()
    meta = json.loads((run_dir / "run.json").read_text())
    by_name = {t["name"]: t for t in meta["targets"]}
    assert by_name["eventsourced"]["status"] == "ok", by_name["eventsourced"]
    summary = (run_dir / "summary.csv").read_text().splitlines()
    es_rows = [r for r in summary if r.startswith("eventsourced,")]
    assert any(",create," in r for r in es_rows) and any(",get," in r for r in es_rows)


def test_a_short_run_on_postgresql(tmp_path: Path, pg_store: str) -> None:
    scenario = tmp_path / "tiny-es.toml"
    scenario.write_text(TINY)
    results = tmp_path / "results"
    proc = subprocess.run([COMMBENCH, "run", str(scenario), "--targets", "eventsourced",
                           "--store", pg_store, "--results-dir", str(results)],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = results.iterdir()
    meta = json.loads((run_dir / "run.json").read_text())
    assert [t["status"] for t in meta["targets"]] == ["ok"]
    assert meta["arguments"]["store"] == pg_store
    assert _schemas(pg_store) == []  # the target run's schema was dropped when it stopped
