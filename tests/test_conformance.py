"""The conformance suite over real servers: every transport and every client variant must
give the reference answers; a broken adapter must make `verify` fail readably."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from harness.stage.broker import delete_namespace
from harness.stage.conformance import checks_for, run_checks
from harness.stage.launcher import Launcher
from harness.stage.verify import run_verify
from targets.core.model import Order
from targets.core.seed import SeedSpec
from targets.registry import TRANSPORTS, Transport
from targets.serving import ServeConfig
from tests.conftest import run

SEED = SeedSpec(users=20, orders_per_user=6, seed=11)
VARIANTS = [(t.name, v) for t in TRANSPORTS.values() for v in t.clients]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, amqp_url: str) -> Iterator[dict[str, str]]:
    """One server per transport for the whole module, stopped at its end."""
    config = ServeConfig(seed=SEED, amqp_url=amqp_url, namespace=f"conf-{uuid.uuid4().hex[:8]}")
    with Launcher(tmp_path_factory.mktemp("logs")) as launcher:
        yield {name: launcher.start(name, config).url for name in TRANSPORTS}
    delete_namespace(amqp_url, config.namespace)


def assert_conformant(transport: str, url: str, variant: str | None = None) -> None:
    """Every conformance check of `transport` runs through a fresh client (`variant`, else
    the default) against the server at `url`, and passes."""
    async def check() -> list:
        client = await TRANSPORTS[transport].client_factory(variant)(url)
        try:
            return await run_checks(client, SEED)
        finally:
            await client.close()

    results = run(check())
    assert [c.name for c in results] == list(checks_for(TRANSPORTS[transport]))
    failed = [f"{c.name}: {c.detail}" for c in results if not c.passed]
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("transport, variant", VARIANTS, ids=[f"{t}-{v}" for t, v in VARIANTS])
def test_every_check_passes(servers: dict[str, str], transport: str, variant: str) -> None:
    assert_conformant(transport, servers[transport], variant)


class _BrokenTotals:
    """A deliberately broken adapter: it reports every order's total one cent high."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.transport, self.variant = "broken", "off-by-one"

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def get_order(self, order_id: int) -> Order:
        order = await self.inner.get_order(order_id)  # type: ignore[attr-defined]
        return dataclasses.replace(order, total_cents=order.total_cents + 1)


async def connect_broken(url: str, *, timeout: float = 10.0) -> _BrokenTotals:
    return _BrokenTotals(await TRANSPORTS["rest"].client_factory()(url, timeout=timeout))


def test_verify_fails_readably_on_a_broken_adapter(
    servers: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = Transport("broken", "REST with an off-by-one adapter",
                       {"uvicorn": "targets.rest.server:serve"},
                       {"off-by-one": f"{__name__}:connect_broken"})
    monkeypatch.setitem(TRANSPORTS, "broken", broken)
    console = Console(record=True, width=160)
    ok = run_verify(["rest", "broken"], urls={"rest": servers["rest"], "broken": servers["rest"]},
                    clients={}, amqp_url="", log_dir=tmp_path, seed=SEED, console=console)
    text = console.export_text()
    assert not ok
    row = next(line for line in text.splitlines() if "get seeded orders" in line)
    n_rest = len(TRANSPORTS["rest"].clients)  # rest, rest-httpx, rest-probe pass; broken fails
    assert row.count("pass") == n_rest and row.count("FAIL") == 1
    assert "FAIL broken · get seeded orders: get_order(1): got" in text
    assert "conformance: " in text and "checks failed" in text


def test_verify_cli_passes_for_every_target(amqp_url: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "verify", "--amqp-url", amqp_url, "--logs", str(tmp_path)],
        capture_output=True, text=True, timeout=240,
        env={**os.environ, "COLUMNS": "200"},  # six columns: room for every name
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for column in ("rest", "rest-httpx", "rest-probe", "grpc", "queue", "eventsourced",
                   "eventsourced-httpx"):
        assert column in proc.stdout
    assert "FAIL" not in proc.stdout
    total = sum(len(checks_for(TRANSPORTS[t])) + 1 for t, _ in VARIANTS)
    assert f"conformance: all {total} checks passed" in proc.stdout
