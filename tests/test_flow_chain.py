"""The chain topology on every transport: real edge, payment and inventory processes (and on
the queue a notification service) on real sockets and a real broker, each service with its
own SQLite store, which the tests read afterwards as reconciliation does.

One chain per transport for the whole module (starting four processes is the expensive
part). Reconciliation covers everything the module created so far, so every test leaves the
books balanced. Waits are bounded polls on a condition in the stores, never sleeps.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import pytest

from harness.stage.broker import delete_namespace
from harness.stage.conformance import CHECKS, run_checks
from harness.stage.flow_checks import FLOW_CHECKS, chain_status, run_flow_checks
from harness.stage.launcher import Launcher, Service
from targets.core.errors import Unavailable
from targets.core.model import (
    STATUS_CANCELLED,
    STATUS_CONFIRMED,
    STATUS_REJECTED,
    CreateOrder,
    ItemRequest,
    Order,
)
from targets.core.seed import SeedSpec
from targets.flow import events
from targets.flow.outcomes import (
    declining_user,
    expected_status,
    in_stock_skus,
    paying_user,
    sold_out_sku,
)
from targets.flow.plan import stand_up, store_path
from targets.flow.reconcile import Reconciliation, reconcile_folder
from targets.queue import codec
from targets.queue.topology import CREATED, Names, split_target_url
from targets.registry import TRANSPORTS, get_transport
from targets.serving import ServeConfig
from tests.conftest import run

SEED = SeedSpec(users=20, orders_per_user=3, seed=11)
HOP_TIMEOUT_S = 1.0
SETTLE_TIMEOUT_S = 10.0
BATCH = 50


@dataclass
class Chain:
    transport: str
    folder: Path
    services: dict[str, Service]  # by role
    namespace: str

    @property
    def url(self) -> str:
        return self.services["order"].url

    def store(self, role: str) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{store_path(self.folder, role)}?mode=ro", uri=True)


@pytest.fixture(scope="module", params=[t.name for t in TRANSPORTS.values() if t.serves_chain])
def chain(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          amqp_url: str) -> Iterator[Chain]:
    transport = request.param
    folder = tmp_path_factory.mktemp(f"chain-{transport}")
    ns = f"flow-{uuid.uuid4().hex[:8]}"
    base = ServeConfig(seed=SEED, amqp_url=amqp_url, namespace=ns, hop_timeout_s=HOP_TIMEOUT_S)
    with Launcher(folder / "logs") as launcher:
        services: dict[str, Service] = {}

        def start(role: str, config: ServeConfig) -> str:
            services[role] = launcher.start(transport, config, name=f"{transport}-{role}")
            return services[role].url

        stand_up(transport, base, folder, start)
        yield Chain(transport, folder, services, ns)
        assert all(s.alive() for s in services.values()), "a service died during the module"
    if (get_transport(transport).broker is not None):
        delete_namespace(amqp_url, ns)


async def _client(chain: Chain):
    return await get_transport(chain.transport).client_factory()(chain.url, timeout=10)


def _settled(chain: Chain, timeout: float = SETTLE_TIMEOUT_S) -> Reconciliation:
    """Reconciliation once the books balance (on the queue the notification service may
    still be catching up when the client already has its answer), or the last one."""
    deadline = time.monotonic() + timeout
    while True:
        r = reconcile_folder(chain.folder)
        if r.clean or time.monotonic() > deadline:
            return r
        time.sleep(0.05)  # polling the stores, not synchronising on time


def _books(chain: Chain, order_id: int) -> tuple[Counter[str], str | None, Counter[str]]:
    """(ledger kinds, payment state, stock movement kinds) of one order."""
    with chain.store("payment") as db:
        money = Counter(k for (k,) in db.execute("SELECT kind FROM ledger WHERE order_id = ?", (order_id,)))
        state = db.execute("SELECT state FROM payments WHERE order_id = ?", (order_id,)).fetchone()
    with chain.store("inventory") as db:
        stock = Counter(k for (k,) in db.execute("SELECT kind FROM movements WHERE order_id = ?",
                                                 (order_id,)))
    return money, state[0] if state else None, stock


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _user(n: int, *, declined: bool = False) -> int:
    start = 5_000_000 + n * 16
    return declining_user(SEED, start) if declined else paying_user(SEED, start)


def test_the_conformance_suites_pass_against_the_chain_edge(chain: Chain) -> None:
    async def body() -> list:
        client = await _client(chain)
        try:
            return [*await run_checks(client, SEED, created_status=chain_status(SEED)),
                    *await run_flow_checks(client, SEED)]
        finally:
            await client.close()

    results = run(body())
    assert [c.name for c in results] == [*CHECKS, *FLOW_CHECKS]
    failed = [f"{c.name}: {c.detail}" for c in results if not c.passed]
    assert not failed, "\n".join(failed)
    r = _settled(chain)
    assert r.clean, r.problems()


def test_each_outcome_leaves_its_own_books(chain: Chain) -> None:
    tag, ok, out = _tag(), in_stock_skus(SEED)[0], sold_out_sku(SEED)
    reqs = {
        "confirmed": CreateOrder(f"{tag}-ok", _user(1), (ItemRequest(ok, 2), ItemRequest(ok, 1))),
        "declined": CreateOrder(f"{tag}-no", _user(2, declined=True), (ItemRequest(ok, 1),)),
        "sold out": CreateOrder(f"{tag}-out", _user(3), (ItemRequest(ok, 1), ItemRequest(out, 1))),
    }

    async def body() -> dict[str, Order]:
        client = await _client(chain)
        try:
            return {k: await client.create_order(r) for k, r in reqs.items()}
        finally:
            await client.close()

    got = run(body())
    assert {k: o.status for k, o in got.items()} == {
        "confirmed": STATUS_CONFIRMED, "declined": STATUS_CANCELLED, "sold out": STATUS_CANCELLED}
    # one charge, one reservation (one movement per SKU: the two lines of `ok` are one)
    assert _books(chain, got["confirmed"].id) == (Counter(charge=1), "charged", Counter(reserve=1))
    # declined: no money moved, nothing reserved
    assert _books(chain, got["declined"].id) == (Counter(), "declined", Counter())
    # out of stock: charged, then refunded; nothing reserved, not even the in-stock line
    assert _books(chain, got["sold out"].id) == (Counter(charge=1, refund=1), "refunded", Counter())
    r = _settled(chain)
    assert r.clean, r.problems()


def test_a_batch_of_concurrent_creates_reconciles_clean(chain: Chain) -> None:
    tag, ok, out = _tag(), in_stock_skus(SEED), sold_out_sku(SEED)
    reqs = []
    for n in range(BATCH):
        kind = n % 3  # confirmed, declined, sold out
        items = (ItemRequest(ok[n % len(ok)], n % 5 + 1),) + ((ItemRequest(out, 1),) if kind == 2 else ())
        reqs.append(CreateOrder(f"{tag}-{n}", _user(10 + n, declined=kind == 1), items))
    retried = reqs[:5]  # sent twice, concurrently: still one order and one charge each
    before = reconcile_folder(chain.folder)

    async def body() -> list[Order]:
        client = await _client(chain)
        try:
            return await asyncio.gather(*(client.create_order(r) for r in (*reqs, *retried)))
        finally:
            await client.close()

    got = run(body())
    for req, order in zip((*reqs, *retried), got, strict=True):
        assert order.status == expected_status(SEED, req), req
    assert len({o.id for o in got}) == BATCH
    r = _settled(chain)
    assert r.clean, r.problems()
    grown = Counter(r.by_status)
    grown.subtract(before.by_status)
    confirmed, declined, sold_out = (len(range(k, BATCH, 3)) for k in range(3))
    assert +grown == Counter({STATUS_CONFIRMED: confirmed, STATUS_CANCELLED: declined + sold_out})
    assert r.charges - before.charges == confirmed + sold_out  # sold out: charged, then refunded
    assert r.refunds - before.refunds == sold_out
    assert r.reservations - before.reservations == confirmed


def test_a_stalled_payment_rejects_the_order_and_compensates(chain: Chain) -> None:
    if (get_transport(chain.transport).broker is not None):
        pytest.skip("the saga waits for a stalled service (its event waits in the queue)")
    import signal

    payment = chain.services["payment"]
    req = CreateOrder(f"{_tag()}-stalled", _user(90), (ItemRequest(in_stock_skus(SEED)[0], 1),))

    async def create() -> float:
        client = await _client(chain)
        try:
            start = time.monotonic()
            with pytest.raises(Unavailable) as exc:
                await client.create_order(req)
            assert exc.value.kind == "unavailable"
            return time.monotonic() - start
        finally:
            await client.close()

    payment.signal(signal.SIGSTOP)
    try:
        took = run(create())
    finally:
        payment.signal(signal.SIGCONT)
    assert 2 * HOP_TIMEOUT_S <= took < 2 * HOP_TIMEOUT_S + 3  # charge, then the refund, timed out

    async def after() -> tuple[Order, Order]:
        client = await _client(chain)
        try:
            with pytest.raises(Unavailable):  # a retry gets the same answer, and no new saga
                await client.create_order(req)
            rejected = (await client.list_user_orders(req.user_id))[0]
            probe = await client.create_order(  # payment serves again
                CreateOrder(f"{req.request_id}-probe", _user(91), req.items))
            return rejected, probe
        finally:
            await client.close()

    rejected, probe = run(after())
    assert (rejected.status, probe.status) == (STATUS_REJECTED, STATUS_CONFIRMED)
    # Whatever payment still served of the stale charge and refund, it keeps no money:
    # refunded (the charge came first), voided (its tombstone refused the charge), or neither
    # (gRPC drops calls cancelled at their deadline).
    r = _settled(chain)
    assert r.clean, r.problems()
    assert r.by_status.get(STATUS_REJECTED) == 1
    money, state, stock = _books(chain, rejected.id)
    assert state in (None, "refunded", "voided") and money["charge"] == money["refund"] and not stock


def test_redelivered_saga_events_charge_and_reserve_once(chain: Chain, amqp_url: str) -> None:
    if not (get_transport(chain.transport).broker is not None):
        pytest.skip("a synchronous chain has no saga events to redeliver")
    req = CreateOrder(f"{_tag()}-dup", _user(95), (ItemRequest(in_stock_skus(SEED)[2], 4),))
    client_id = f"dup{_tag()}"

    async def body() -> Order:
        client = await _client(chain)
        try:
            order = await client.create_order(req)
        finally:
            await client.close()
        names = Names(split_target_url(chain.url)[1])
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()  # publisher confirms
            completions = await channel.declare_queue(exclusive=True)
            await completions.bind(names.events, routing_key=f"{CREATED}.{client_id}")
            exchange = await channel.get_exchange(names.saga)
            for event in (events.ORDER_CREATED, events.PAYMENT_PROCESSED):  # as a redelivery would
                payload = codec.encode_saga(event, order, req.request_id, client_id)
                await exchange.publish(aio_pika.Message(
                    payload, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=event)
            # Each duplicate runs the rest of the saga again and ends in a completion event.
            seen = []
            async with asyncio.timeout(SETTLE_TIMEOUT_S), completions.iterator() as messages:
                async for message in messages:
                    await message.ack()
                    seen.append(codec.decode_object(message.body))
                    if len(seen) == 2:
                        break
        assert all(e["order"]["status"] == STATUS_CONFIRMED for e in seen)
        return order

    order = run(body())
    assert order.status == STATUS_CONFIRMED
    assert _books(chain, order.id) == (Counter(charge=1), "charged", Counter(reserve=1))
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while _deliveries(chain, order.id) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _deliveries(chain, order.id) == 2  # the duplicate OrderCreated arrived, one row kept
    r = _settled(chain)
    assert r.clean, r.problems()


def _deliveries(chain: Chain, order_id: int) -> int:
    with chain.store("notification") as db:
        rows = db.execute("SELECT deliveries FROM notifications WHERE order_id = ?", (order_id,)).fetchall()
    assert len(rows) <= 1, "a redelivered OrderCreated added a notification"
    return rows[0][0] if rows else 0
