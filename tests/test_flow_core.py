"""The order flow's domain in isolation: seeded outcomes, the payment, inventory and
notification cores on their own SQLite stores, the saga's reactions, and reconciliation
(including what it must find when the books are wrong, written into the stores by hand)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from targets.core.errors import InvalidRequest, Unavailable, error_from_kind
from targets.core.model import (
    CATALOGUE,
    STATUS_CANCELLED,
    STATUS_CONFIRMED,
    STATUS_PENDING,
    STATUS_REJECTED,
    STATUSES,
    CreateOrder,
    Item,
    ItemRequest,
    Order,
)
from targets.core.seed import SeedSpec, seed_orders
from targets.core.service import OrderService, build_service
from targets.flow import events as ev
from targets.flow import inventory as inv
from targets.flow import payment as pay
from targets.flow import saga
from targets.flow.inventory import Inventory
from targets.flow.notification import Notifications
from targets.flow.orders import answer, settle
from targets.flow.outcomes import (
    AMPLE_STOCK,
    declines,
    declining_user,
    expected_status,
    in_stock_skus,
    initial_stock,
    paying_user,
    sold_out_sku,
)
from targets.flow.payment import Payments
from targets.flow.plan import store_path
from targets.flow.reconcile import reconcile, reconcile_folder
from tests.conftest import run

SEED = SeedSpec(users=4, orders_per_user=2, seed=7)


def test_seeded_outcomes_are_deterministic_and_rare() -> None:
    rate = sum(declines(SEED, u) for u in range(1, 20_001)) / 20_000
    assert 0.01 < rate < 0.03
    assert [declines(7, u) for u in range(1, 500)] == [declines(SEED, u) for u in range(1, 500)]
    assert {sold_out_sku(s) for s in range(1, 40)} != {sold_out_sku(1)}  # the seed picks it
    stock = initial_stock(SEED)
    assert stock[sold_out_sku(SEED)] == 0 and sum(v == AMPLE_STOCK for v in stock.values()) == 19
    assert declines(SEED, declining_user(SEED, 50)) and not declines(SEED, paying_user(SEED, 50))
    ok = (ItemRequest(in_stock_skus(SEED)[0], 1),)
    out = (*ok, ItemRequest(sold_out_sku(SEED), 1))
    assert expected_status(SEED, CreateOrder("r", paying_user(SEED), ok)) == STATUS_CONFIRMED
    assert expected_status(SEED, CreateOrder("r", declining_user(SEED), ok)) == STATUS_CANCELLED
    assert expected_status(SEED, CreateOrder("r", paying_user(SEED), out)) == STATUS_CANCELLED


def test_flow_statuses_leave_the_seed_data_alone() -> None:
    assert STATUSES == ("created", "paid", "shipped", "delivered", "cancelled")
    assert {o.status for o in seed_orders(SeedSpec(users=50, orders_per_user=5))} <= set(STATUSES)
    assert isinstance(error_from_kind("unavailable", "x"), Unavailable)
    assert error_from_kind("unavailable", "x").kind == "unavailable"


def test_charge_is_idempotent_and_refund_leaves_a_tombstone(tmp_path: Path) -> None:
    p = Payments.open(f"sqlite:{tmp_path / 'p.db'}", SEED)
    user = paying_user(SEED)
    assert p.charge(1, user, 500) == pay.CHARGED
    assert p.charge(1, user, 500) == pay.CHARGED  # a retry charges nothing more
    assert p.refund(1) == pay.REFUNDED and p.refund(1) == pay.REFUNDED
    assert p.charge(1, user, 500) == pay.REFUNDED  # a late redelivery does not charge again
    assert p.charge(2, declining_user(SEED), 500) == pay.DECLINED
    assert p.refund(2) == pay.DECLINED
    assert p.refund(3) == pay.VOIDED  # refunded before the charge arrived
    assert p.charge(3, user, 500) == pay.VOIDED  # so the late charge is refused
    kinds = p.db.execute("SELECT order_id, kind FROM ledger ORDER BY id").fetchall()
    assert kinds == [(1, "charge"), (1, "refund")]
    with pytest.raises(InvalidRequest):
        p.charge(4, user, -1)
    with pytest.raises(InvalidRequest):
        p.charge(0, user, 1)
    p.close()


def test_reserve_is_all_or_nothing_idempotent_and_durable(tmp_path: Path) -> None:
    spec = f"sqlite:{tmp_path / 'i.db'}"
    i = Inventory.open(spec, SEED)
    ok, out = in_stock_skus(SEED)[:2], sold_out_sku(SEED)
    assert i.reserve(1, [(ok[0], 3), (ok[0], 2), (ok[1], 1)]) == inv.RESERVED
    assert i.reserve(1, [(ok[0], 3)]) == inv.RESERVED  # a retry takes nothing more
    assert i.available(ok[0]) == AMPLE_STOCK - 5
    assert i.reserve(2, [(ok[1], 1), (out, 1)]) == inv.OUT_OF_STOCK
    assert i.available(ok[1]) == AMPLE_STOCK - 1  # nothing taken for order 2
    assert i.release(1) == inv.RELEASED and i.release(1) == inv.RELEASED
    assert i.available(ok[0]) == AMPLE_STOCK
    assert i.release(3) == inv.VOIDED and i.reserve(3, [(ok[0], 1)]) == inv.VOIDED
    assert i.reserve(4, [(ok[0], 7)]) == inv.RESERVED
    i.close()
    again = Inventory.open(spec, SEED)  # a durable store keeps its stock, not the seed's
    assert again.available(ok[0]) == AMPLE_STOCK - 7
    with pytest.raises(InvalidRequest):
        again.reserve(5, [("NOPE", 1)])
    with pytest.raises(InvalidRequest):
        again.reserve(5, [])
    again.close()


def test_saga_reactions_answer_redeliveries_with_the_same_event(tmp_path: Path) -> None:
    p = Payments.open("memory", SEED)
    i = Inventory.open("memory", SEED)
    n = Notifications.open("memory")
    ok = in_stock_skus(SEED)[0]
    order = Order(11, paying_user(SEED), (), 700, STATUS_PENDING, 0)
    for _ in range(2):
        assert saga.payment_reacts(p, ev.ORDER_CREATED, order) == ev.PAYMENT_PROCESSED
    assert p.db.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == 1
    stocked = Order(11, order.user_id, (_item(ok, 2),), 700, STATUS_PENDING, 0)
    for _ in range(2):
        assert saga.inventory_reacts(i, ev.PAYMENT_PROCESSED, stocked) == ev.STOCK_RESERVED
    assert i.available(ok) == AMPLE_STOCK - 2
    short = Order(12, order.user_id, (_item(sold_out_sku(SEED), 1),), 900, STATUS_PENDING, 0)
    assert saga.payment_reacts(p, ev.ORDER_CREATED, short) == ev.PAYMENT_PROCESSED
    assert saga.inventory_reacts(i, ev.PAYMENT_PROCESSED, short) == ev.STOCK_FAILED
    for _ in range(2):
        assert saga.payment_reacts(p, ev.STOCK_FAILED, short) == ev.PAYMENT_REFUNDED
    assert saga.payment_reacts(p, ev.ORDER_CREATED, short) is None  # past and back: silent
    declined = Order(13, declining_user(SEED), (), 100, STATUS_PENDING, 0)
    assert saga.payment_reacts(p, ev.ORDER_CREATED, declined) == ev.PAYMENT_FAILED
    assert n.record(order) and not n.record(order) and n.deliveries(11) == 2
    with pytest.raises(saga.UnexpectedEvent):
        saga.inventory_reacts(i, ev.ORDER_CREATED, order)


def test_the_first_terminal_status_wins_and_rejected_is_unavailable() -> None:
    orders = run(build_service("memory", None))
    order, _ = run(orders.create_order(CreateOrder("r", 1, (ItemRequest("SKU-001", 1),)),
                                       status=STATUS_PENDING))
    assert run(settle(orders, order.id, STATUS_CONFIRMED)).status == STATUS_CONFIRMED
    assert run(settle(orders, order.id, STATUS_CANCELLED)).status == STATUS_CONFIRMED
    rejected = run(orders.set_status(order.id, STATUS_REJECTED))
    with pytest.raises(Unavailable):
        answer(rejected)


def _item(sku: str, quantity: int) -> Item:
    return Item(sku, quantity, CATALOGUE[sku])


def _close(orders: OrderService, *cores: Payments | Inventory | Notifications) -> None:
    run(orders.store.close())
    for core in cores:
        core.close()


def _run_books(folder: Path) -> tuple[OrderService, Payments, Inventory, dict[str, int]]:
    """Stores laid out as a chain run leaves them, with one order of each outcome driven
    through the cores as the services would."""
    orders = run(build_service(f"sqlite:{store_path(folder, 'order')}", SEED))
    p = Payments.open(f"sqlite:{store_path(folder, 'payment')}", SEED)
    i = Inventory.open(f"sqlite:{store_path(folder, 'inventory')}", SEED)
    ok, out = in_stock_skus(SEED)[0], sold_out_sku(SEED)
    ids: dict[str, int] = {}
    for label, user, sku in (("confirmed", paying_user(SEED), ok),
                             ("declined", declining_user(SEED), ok),
                             ("sold out", paying_user(SEED), out)):
        order, _ = run(orders.create_order(CreateOrder(label, user, (ItemRequest(sku, 2),)),
                                           status=STATUS_PENDING))
        ids[label] = order.id
        if p.charge(order.id, user, order.total_cents) != pay.CHARGED:
            run(settle(orders, order.id, STATUS_CANCELLED))
        elif i.reserve(order.id, [(sku, 2)]) == inv.RESERVED:
            run(settle(orders, order.id, STATUS_CONFIRMED))
        else:
            p.refund(order.id)
            run(settle(orders, order.id, STATUS_CANCELLED))
    return orders, p, i, ids


def test_reconciliation_of_consistent_books_is_clean(tmp_path: Path) -> None:
    orders, p, i, _ = _run_books(tmp_path)
    r = reconcile_folder(tmp_path)
    assert r.clean, r.problems()
    assert r.orders == 3  # the 8 seeded orders have no saga and are left out
    assert r.by_status == {STATUS_CANCELLED: 2, STATUS_CONFIRMED: 1}
    assert (r.charges, r.refunds, r.reservations) == (2, 1, 1)
    assert r.notifications_missing is None  # no notification store: not a queue run
    _close(orders, p, i)


def test_reconciliation_finds_a_stranded_order_and_a_double_charge(tmp_path: Path) -> None:
    orders, p, i, ids = _run_books(tmp_path)
    stranded, _ = run(orders.create_order(CreateOrder("stranded", 2,
                                                      (ItemRequest("SKU-001", 1),)),
                                          status=STATUS_PENDING))  # no saga behind it
    _close(orders, p, i)
    with sqlite3.connect(store_path(tmp_path, "payment")) as db:  # by hand, behind the guard
        db.execute("INSERT INTO ledger (order_id, kind, amount_cents, at_ms)"
                   " SELECT order_id, kind, amount_cents, at_ms FROM ledger WHERE order_id = ?",
                   (ids["confirmed"],))
    with sqlite3.connect(store_path(tmp_path, "inventory")) as db:
        db.execute("UPDATE stock SET available = available - 1 WHERE sku = 'SKU-001'")
    r = reconcile_folder(tmp_path)
    assert not r.clean
    assert r.stuck["unpaid"] == [stranded.id]
    assert r.double_charges == [ids["confirmed"]]
    assert r.confirmed_not_once == [ids["confirmed"]]
    assert set(r.stock_mismatches) == {"SKU-001"}
    problems = "\n".join(r.problems())
    assert f"1 orders stuck unpaid: {stranded.id}" in problems
    assert f"1 double charges: {ids['confirmed']}" in problems


def test_reconciliation_finds_leftovers_and_notification_gaps(tmp_path: Path) -> None:
    orders, p, i, ids = _run_books(tmp_path)
    n = Notifications.open(f"sqlite:{store_path(tmp_path, 'notification')}")
    n.record(run(orders.get_order(ids["confirmed"])))
    n.record(run(orders.get_order(ids["declined"])))
    run(orders.set_status(ids["confirmed"], STATUS_CANCELLED))  # cancelled, but paid and reserved
    _close(orders, p, i, n)
    with sqlite3.connect(store_path(tmp_path, "notification")) as db:
        db.execute("INSERT INTO notifications (order_id, user_id, total_cents, first_at_ms, deliveries)"
                   " VALUES (?, 1, 1, 0, 1)", (ids["declined"],))
    r = reconcile_folder(tmp_path)
    assert r.cancelled_with_leftovers == [ids["confirmed"]]
    assert r.notifications_missing == [ids["sold out"]]
    assert r.notifications_duplicated == [ids["declined"]]
    with pytest.raises(ValueError, match="no SQLite store"):
        reconcile_folder(tmp_path / "nothing-here")
    with pytest.raises(ValueError, match="is not a payment store"):
        reconcile(store_path(tmp_path, "order"), store_path(tmp_path, "order"),
                  store_path(tmp_path, "inventory"))
