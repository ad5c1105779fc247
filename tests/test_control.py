"""The fault control channel: the switch and its protocol in-process, then on a real chain per
transport (edge, payment, inventory, and on the queue notification, each with its control
socket) that a delay or errors switched on payment at run time show through the edge as each
transport's own behaviour, and that switching them off restores it.

Control sockets live under tempfile.mkdtemp("cb-"): a Unix socket path has at most 107 bytes,
which pytest's tmp_path can exceed. Waits are bounded polls on a condition, never sleeps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import socket
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.stage.broker import delete_namespace
from harness.stage.control import exchange, set_faults
from harness.stage.launcher import Launcher, Service
from targets.control import FaultSwitch, InjectedFault, parse_state, serve_control
from targets.core.errors import TransportError, Unavailable
from targets.core.model import STATUS_CONFIRMED, STATUS_PENDING, STATUS_REJECTED, CreateOrder, ItemRequest
from targets.core.seed import SeedSpec
from targets.flow.outcomes import in_stock_skus, paying_user
from targets.flow.plan import stand_up, store_path
from targets.flow.reconcile import Reconciliation, reconcile_folder
from targets.registry import TRANSPORTS, get_transport
from targets.serving import ServeConfig, ServeError
from tests.conftest import run

SEED = SeedSpec(users=20, orders_per_user=3, seed=11)
HOP_TIMEOUT_S = 2.0  # well above the 0.3 s delay: a delayed hop is slow, not failed
DELAY_S = 0.3
CREATES = 3  # per median
SETTLE_TIMEOUT_S = 10.0


# --- in-process: the switch and the protocol ---------------------------------------------------

def test_the_switch_is_active_exactly_when_a_fault_is_set() -> None:
    switch = FaultSwitch()
    assert not switch.active
    switch.jitter_s = 0.1
    assert switch.active
    switch.set(error_fraction=0.5)
    assert switch.active and switch.jitter_s == 0
    switch.set()
    assert not switch.active


def test_before_sleeps_within_the_jitter_and_fails_the_set_fraction(monkeypatch) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    switch = FaultSwitch(delay_s=0.2, jitter_s=0.05)

    async def body() -> None:
        for _ in range(200):
            await switch.before()
        switch.set(jitter_s=0.3)  # no delay, jitter only: never a negative sleep
        for _ in range(200):
            await switch.before()
        switch.set(error_fraction=1.0)
        for _ in range(5):
            with pytest.raises(InjectedFault) as exc:
                await switch.before()
            assert exc.value.kind == "injected"

    asyncio.run(body())
    assert all(0.15 <= s <= 0.25 for s in slept[:200]) and max(slept[:200]) > min(slept[:200])
    assert all(0 <= s <= 0.3 for s in slept[200:]) and slept[200:].count(0.0) > 0
    assert len(slept) == 400 and switch.injected == 5  # errors alone: no sleep


@pytest.mark.parametrize(("line", "why"), [
    (b"not json", "not JSON"), (b"[1]", "JSON object"), (b'{"delay": 1}', "unknown key"),
    (b'{"delay_s": "1"}', "finite number"), (b'{"delay_s": true}', "finite number"),
    (b'{"jitter_s": -0.1}', "0 or more"), (b'{"error_fraction": 1.5}', "between 0 and 1"),
    (b'{"delay_s": 1e999}', "finite number"), (b"\xff\n", "not JSON"),
])
def test_malformed_lines_are_refused_with_a_reason(line: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_state(line)


def test_missing_keys_reset_to_zero() -> None:
    assert parse_state(b'{"delay_s": 2}') == {"delay_s": 2.0, "jitter_s": 0.0, "error_fraction": 0.0,
                                                    "crash": 0.0}
    assert parse_state(b"{}") == {"delay_s": 0.0, "jitter_s": 0.0, "error_fraction": 0.0, "crash": 0.0}


def test_the_socket_is_claimed_from_a_dead_process_and_removed_on_close() -> None:
    folder = tempfile.mkdtemp(prefix="cb-")
    path = os.path.join(folder, "c.sock")
    try:
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(path)  # bound, never listening: what a killed service leaves behind
        stale.close()

        async def body() -> None:
            switch = FaultSwitch()
            server = await serve_control(path, switch)
            with pytest.raises(ServeError, match="another process"):
                await serve_control(path, FaultSwitch())
            answer = await asyncio.to_thread(set_faults, path, delay_s=0.5, jitter_s=0.1)
            assert answer == {"delay_s": 0.5, "jitter_s": 0.1, "error_fraction": 0.0, "crash": 0.0}
            assert (switch.delay_s, switch.jitter_s, switch.active) == (0.5, 0.1, True)
            server.close()
            assert not os.path.exists(path)

        asyncio.run(body())
        with pytest.raises(UserError, match="cannot reach the fault control socket"):
            set_faults(path)
        with pytest.raises(ServeError, match="at most 107 bytes"):
            asyncio.run(serve_control(os.path.join(folder, "x" * 120), FaultSwitch()))
    finally:
        shutil.rmtree(folder)


# --- a real chain per transport ---------------------------------------------------------------

@dataclass
class Chain:
    transport: str
    folder: Path
    services: dict[str, Service]  # by role
    controls: dict[str, str]  # control socket by role

    @property
    def queued(self) -> bool:
        return get_transport(self.transport).broker is not None

    def store(self, role: str) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{store_path(self.folder, role)}?mode=ro", uri=True)


@pytest.fixture(scope="module", params=[t.name for t in TRANSPORTS.values() if t.serves_chain])
def chain(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          amqp_url: str) -> Iterator[Chain]:
    transport = request.param
    folder = tmp_path_factory.mktemp(f"control-{transport}")
    sockets = tempfile.mkdtemp(prefix="cb-")
    ns = f"ctl-{uuid.uuid4().hex[:8]}"
    base = ServeConfig(seed=SEED, amqp_url=amqp_url, namespace=ns, hop_timeout_s=HOP_TIMEOUT_S)
    controls: dict[str, str] = {}
    try:
        with Launcher(folder / "logs") as launcher:
            services: dict[str, Service] = {}

            def start(role: str, config: ServeConfig) -> str:
                controls[role] = os.path.join(sockets, f"{role}.sock")
                config = dataclasses.replace(config, control=controls[role])
                services[role] = launcher.start(transport, config, name=f"{transport}-{role}")
                return services[role].url

            stand_up(transport, base, folder, start)
            yield Chain(transport, folder, services, controls)
            assert all(s.alive() for s in services.values()), "a service died during the module"
        assert not os.listdir(sockets), "a stopped service left its control socket behind"
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
        if get_transport(transport).broker is not None:
            delete_namespace(amqp_url, ns)


def _request(n: int) -> CreateOrder:
    user = paying_user(SEED, 6_000_000 + n * 16)
    return CreateOrder(f"{uuid.uuid4().hex[:8]}-ctl{n}", user, (ItemRequest(in_stock_skus(SEED)[0], 1),))


async def _client(chain: Chain):
    return await get_transport(chain.transport).client_factory()(chain.services["order"].url, timeout=20)


def _creates(chain: Chain, first: int) -> list[float]:
    """Seconds each of CREATES sequential creates took through the edge (all confirmed)."""
    async def body() -> list[float]:
        client = await _client(chain)
        took = []
        try:
            for n in range(first, first + CREATES):
                start = time.monotonic()
                order = await client.create_order(_request(n))
                took.append(time.monotonic() - start)
                assert order.status == STATUS_CONFIRMED
        finally:
            await client.close()
        return took

    return run(body())


def _settled(chain: Chain) -> Reconciliation:
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        r = reconcile_folder(chain.folder)
        if r.clean or time.monotonic() > deadline:
            return r
        time.sleep(0.05)  # polling the stores, not synchronising on time


def _charges(chain: Chain, order_id: int) -> Counter[str]:
    with chain.store("payment") as db:
        return Counter(k for (k,) in db.execute("SELECT kind FROM ledger WHERE order_id = ?", (order_id,)))


def _status(chain: Chain, request_id: str) -> str | None:
    with chain.store("order") as db:
        row = db.execute("SELECT status FROM orders WHERE request_id = ?", (request_id,)).fetchone()
    return row[0] if row else None


def test_a_delay_on_payment_slows_creates_until_cleared(chain: Chain) -> None:
    payment = chain.controls["payment"]
    assert set_faults(payment, delay_s=DELAY_S) == {"delay_s": DELAY_S, "jitter_s": 0.0,
                                                    "error_fraction": 0.0, "crash": 0.0}
    try:
        slow = statistics.median(_creates(chain, 0))
    finally:
        set_faults(payment)
    fast = statistics.median(_creates(chain, 10))
    # Every create passes payment once, so DELAY_S is a floor; the ceiling allows 1.5 s of a
    # busy shared machine. Cleared, a create takes a few ms to a few tens of ms, far below.
    assert DELAY_S <= slow < DELAY_S + 1.5, slow
    assert fast < DELAY_S, fast
    assert _settled(chain).clean


def test_errors_on_payment_reject_or_hold_the_order_until_cleared(chain: Chain) -> None:
    payment = chain.controls["payment"]
    req = _request(20)
    before = exchange(payment, {})["injected"]
    set_faults(payment, error_fraction=1.0)
    try:
        if chain.queued:
            order = run(_held_then_completed(chain, req, payment, before))
        else:
            order = _rejected(chain, req)
    finally:
        set_faults(payment)
    r = _settled(chain)
    assert r.clean, r.problems()
    if chain.queued:  # redelivered, not lost: the saga ran once the errors were gone
        assert order.status == STATUS_CONFIRMED
        assert _charges(chain, order.id) == Counter(charge=1)
    else:  # the charge failed, and so did the refund that compensates it: no money moved
        assert order.status == STATUS_REJECTED
        assert _charges(chain, order.id) == Counter()
        assert exchange(payment, {})["injected"] - before >= 2  # charge and refund
    assert statistics.median(_creates(chain, 30)) < DELAY_S  # serving normally again


def _rejected(chain: Chain, req: CreateOrder):
    async def body():
        client = await _client(chain)
        try:
            with pytest.raises(Unavailable) as exc:  # REST 503, gRPC UNAVAILABLE: rejected
                await client.create_order(req)
            assert exc.value.kind == "unavailable"
            return (await client.list_user_orders(req.user_id))[0]
        finally:
            await client.close()

    return run(body())


async def _held_then_completed(chain: Chain, req: CreateOrder, payment: str, before: int):
    """The queue: payment fails OrderCreated and requeues it; the create stays pending until
    the errors are cleared, then completes from a redelivery of the same message."""
    client = await _client(chain)
    try:
        create = asyncio.ensure_future(client.create_order(req))
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        # Three failures of one message: delivered, requeued and redelivered at least twice.
        while (await asyncio.to_thread(exchange, payment, {"error_fraction": 1.0}))["injected"] \
                - before < 3:
            assert time.monotonic() < deadline, "payment never received the saga event"
            await asyncio.sleep(0.02)  # polling the counter, not synchronising on time
        assert not create.done()
        assert _status(chain, req.request_id) == STATUS_PENDING
        await asyncio.to_thread(set_faults, payment)
        async with asyncio.timeout(SETTLE_TIMEOUT_S):
            return await create
    finally:
        await client.close()


def test_a_malformed_control_line_is_refused_and_the_service_keeps_serving(chain: Chain) -> None:
    for role, path in chain.controls.items():
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(path)
            answers = sock.makefile("rb")
            for line, ok in ((b"{not json\n", False), (b'{"error_fraction": 2}\n', False),
                             (b"{}\n", True)):  # the connection survives a bad line
                sock.sendall(line)
                answer = answers.readline()
                assert answer.startswith(b'{"ok": true' if ok else b'{"ok": false, "error": '), \
                    (role, line, answer)
        assert chain.services[role].alive()
    assert statistics.median(_creates(chain, 40)) < DELAY_S  # every service took part


EDGE_ERROR = {"rest": "http_500", "grpc": "grpc_internal", "queue": "injected"}


def test_errors_on_the_edge_answer_each_transports_own_error(chain: Chain) -> None:
    """REST 500 with the error body (kind injected), gRPC INTERNAL, a queue RPC error reply."""
    async def body() -> TransportError:
        client = await _client(chain)
        try:
            with pytest.raises(TransportError) as exc:
                await client.get_order(1)
            return exc.value
        finally:
            await client.close()

    set_faults(chain.controls["order"], error_fraction=1.0)
    try:
        error = run(body())
    finally:
        set_faults(chain.controls["order"])
    assert error.kind == EDGE_ERROR[chain.transport]
    assert "fault injected by the control channel" in error.message


def test_gauges_are_read_without_changing_the_faults() -> None:
    from targets.control import GAUGES, FaultSwitch, answer

    switch = FaultSwitch(delay_s=0.5)
    GAUGES["unacked:x.saga.payment"] = 7
    try:
        assert answer(switch, b'{"query": "gauges"}')["gauges"]["unacked:x.saga.payment"] == 7
        assert switch.delay_s == 0.5  # a query sets nothing
        refused = answer(switch, b'{"query": "gauges", "extra": 1}')
        assert refused["ok"] is False and '{"query": "gauges"}' in refused["error"]
    finally:
        del GAUGES["unacked:x.saga.payment"]
