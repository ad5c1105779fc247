"""Reconciliation: after a run, read the edge's, payment's and inventory's (and on the queue
the notification service's) SQLite stores and account for every order of the flow.

It reads the stores only (read-only connections) and never counts client answers, so it
finds what the services did, not what the clients were told: orders stuck mid-saga, double
charges, confirmed orders not charged or reserved exactly once, cancelled or rejected ones
with money or stock left behind, stock that does not add up, notifications missing or
duplicated. Seeded orders (request id `seed-<id>`, inserted with the seed data) have no
saga and are left out.

    from targets.flow.reconcile import reconcile, reconcile_folder
    r = reconcile("run/order.db", "run/payment.db", "run/inventory.db", "run/notification.db")
    r = reconcile_folder(folder)  # the stores targets.flow.plan laid out: <folder>/<role>.db
    r.clean, r.problems(), r.to_dict()
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from targets.core.model import (
    STATUS_CANCELLED,
    STATUS_CONFIRMED,
    STATUS_REJECTED,
    TERMINAL_STATUSES,
)
from targets.flow.db import open_read_only
from targets.flow.plan import store_path
from targets.serving import ROLE_INVENTORY, ROLE_NOTIFICATION, ROLE_ORDER, ROLE_PAYMENT

# How far a non-terminal order's saga got, judged from the downstream stores.
STAGE_UNPAID = "unpaid"  # no net charge
STAGE_PAID = "paid"  # charged, nothing reserved
STAGE_RESERVED = "reserved"  # charged and reserved, not settled by the edge


@dataclass(frozen=True)
class _FlowOrder:
    id: int
    status: str
    total_cents: int
    items: dict[str, int]  # quantity per SKU
    request_id: str = ""


@dataclass(frozen=True)
class Reconciliation:
    """One target's accounting. Lists hold order ids; `clean` is True when nothing is off."""

    orders: int  # orders created through the flow (seeded ones excluded)
    by_status: dict[str, int]
    # orders whose request id starts with the `load` prefix reconcile was given (the load's
    # own, without the conformance gate's): by status; None when no prefix was given
    load_by_status: dict[str, int] | None
    stuck: dict[str, list[int]]  # non-terminal orders by stage (unpaid, paid, reserved)
    charges: int  # ledger entries, i.e. money movements
    refunds: int
    charged_cents: int
    refunded_cents: int
    payment_states: dict[str, int]  # payments rows by state (declined, voided tombstones, ...)
    reservations: int  # orders with stock taken (reserve movements, per order)
    releases: int
    reservation_states: dict[str, int]
    double_charges: list[int]  # more than one net charge
    confirmed_not_once: list[int]  # confirmed without exactly one charge and one reservation
    cancelled_with_leftovers: list[int]  # a net charge or reserved stock left behind
    rejected_with_leftovers: list[int]  # the edge's best-effort compensation did not land
    stock_mismatches: dict[str, dict[str, int]]  # SKU → initial, reserved, released, available
    unknown_orders: list[int]  # money or stock moved for an order the edge does not have
    notifications_missing: list[int] | None = None  # None: no notification store given
    notifications_duplicated: list[int] | None = None

    @property
    def clean(self) -> bool:
        return not self.problems()

    def problems(self) -> list[str]:
        """One line per kind of discrepancy, empty when the books balance."""
        out: list[str] = []
        for stage, ids in self.stuck.items():
            if ids:
                out.append(f"{len(ids)} orders stuck {stage}: {_ids(ids)}")
        for label, ids in (
            ("double charges", self.double_charges),
            ("confirmed orders not charged and reserved exactly once", self.confirmed_not_once),
            ("cancelled orders with a charge or stock left", self.cancelled_with_leftovers),
            ("rejected orders with a charge or stock left", self.rejected_with_leftovers),
            ("payments or reservations for orders the edge does not have", self.unknown_orders),
            ("orders without a notification", self.notifications_missing or []),
            ("orders notified more than once", self.notifications_duplicated or []),
        ):
            if ids:
                out.append(f"{len(ids)} {label}: {_ids(ids)}")
        for sku, n in self.stock_mismatches.items():
            out.append(f"stock of {sku} does not add up: initial {n['initial']} − reserved "
                       f"{n['reserved']} + released {n['released']} ≠ available {n['available']}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "clean": self.clean, "problems": self.problems()}


def _ids(ids: list[int], shown: int = 10) -> str:
    head = ", ".join(map(str, ids[:shown]))
    return head + (f", … ({len(ids) - shown} more)" if len(ids) > shown else "")


def reconcile(
    orders: str | Path,
    payments: str | Path,
    inventory: str | Path,
    notifications: str | Path | None = None,
    load: str | None = None,
) -> Reconciliation:
    """Account for one target from its stores (paths or `sqlite:PATH` specs); ValueError when
    a store is missing. Pass `notifications` for the queue topology only."""
    with _store(orders, "order") as db:
        flow = _flow_orders(db)
        known = {oid for (oid,) in db.execute("SELECT id FROM orders")}
    with _store(payments, "payment") as db:
        money = _money(db)
        payment_states = dict(db.execute("SELECT state, COUNT(*) FROM payments GROUP BY state"))
    with _store(inventory, "inventory") as db:
        taken = _taken(db)
        reservation_states = dict(db.execute("SELECT state, COUNT(*) FROM reservations GROUP BY state"))
        stock = _stock_mismatches(db)
        releases = int(db.execute(
            "SELECT COUNT(DISTINCT order_id) FROM movements WHERE kind = 'release'").fetchone()[0])
    notified: Counter[int] | None = None
    if notifications is not None:
        with _store(notifications, "notification") as db:
            notified = Counter(oid for (oid,) in db.execute("SELECT order_id FROM notifications"))

    stuck: dict[str, list[int]] = {STAGE_UNPAID: [], STAGE_PAID: [], STAGE_RESERVED: []}
    double, confirmed_bad, cancelled_left, rejected_left = [], [], [], []
    for o in flow.values():
        charges, refunds, charged, refunded = money.get(o.id, (0, 0, 0, 0))
        net_charges, net_cents = charges - refunds, charged - refunded
        held = {sku: q for sku, q in taken.get(o.id, {}).items() if q}
        if net_charges > 1:
            double.append(o.id)
        if o.status not in TERMINAL_STATUSES:
            stage = STAGE_RESERVED if held else STAGE_PAID if net_charges > 0 else STAGE_UNPAID
            stuck[stage].append(o.id)
        elif o.status == STATUS_CONFIRMED:
            if net_charges != 1 or net_cents != o.total_cents or held != o.items:
                confirmed_bad.append(o.id)
        elif net_charges or net_cents or held:
            if o.status == STATUS_CANCELLED:
                cancelled_left.append(o.id)
            elif o.status == STATUS_REJECTED:
                rejected_left.append(o.id)
    moved = {oid for oid, m in money.items() if m[0] or m[1]} | set(taken)
    by_status = Counter(o.status for o in flow.values())
    return Reconciliation(
        orders=len(flow),
        by_status=dict(sorted(by_status.items())),
        load_by_status=None if load is None else dict(sorted(Counter(
            o.status for o in flow.values() if o.request_id.startswith(load)).items())),
        stuck=stuck,
        charges=sum(m[0] for m in money.values()),
        refunds=sum(m[1] for m in money.values()),
        charged_cents=sum(m[2] for m in money.values()),
        refunded_cents=sum(m[3] for m in money.values()),
        payment_states=payment_states,
        reservations=sum(1 for t in taken.values() if t),
        releases=releases,
        reservation_states=reservation_states,
        double_charges=sorted(double),
        confirmed_not_once=sorted(confirmed_bad),
        cancelled_with_leftovers=sorted(cancelled_left),
        rejected_with_leftovers=sorted(rejected_left),
        stock_mismatches=stock,
        unknown_orders=sorted(moved - known),
        notifications_missing=None if notified is None else sorted(set(flow) - set(notified)),
        notifications_duplicated=None if notified is None
        else sorted(oid for oid, n in notified.items() if n > 1),
    )


def reconcile_folder(folder: str | Path, load: str | None = None) -> Reconciliation:
    """`reconcile` over `<folder>/{order,payment,inventory}.db`, and `notification.db` when
    the topology had one (the queue)."""
    folder = Path(folder)
    notifications = store_path(folder, ROLE_NOTIFICATION)
    return reconcile(store_path(folder, ROLE_ORDER), store_path(folder, ROLE_PAYMENT),
                     store_path(folder, ROLE_INVENTORY),
                     notifications if notifications.exists() else None, load)


@contextlib.contextmanager
def _store(path: str | Path, role: str) -> Iterator[sqlite3.Connection]:
    """A read-only connection, closed afterwards; ValueError (one line) when `path` is not
    the `role` service's store."""
    db = open_read_only(path)
    try:
        yield db
    except sqlite3.Error as exc:
        raise ValueError(f"{path} is not a {role} store: {exc}") from None
    finally:
        db.close()


def _flow_orders(db: sqlite3.Connection) -> dict[int, _FlowOrder]:
    rows = db.execute("SELECT id, status, total_cents, items, request_id FROM orders"
                      " WHERE request_id != 'seed-' || id")
    out: dict[int, _FlowOrder] = {}
    for oid, status, total, items, request_id in rows:
        wanted: dict[str, int] = defaultdict(int)
        for sku, quantity, _price in json.loads(items):
            wanted[sku] += quantity
        out[oid] = _FlowOrder(oid, status, total, dict(wanted), request_id)
    return out


def _money(db: sqlite3.Connection) -> dict[int, tuple[int, int, int, int]]:
    """order id → (charges, refunds, charged cents, refunded cents) from the ledger."""
    rows = db.execute(
        "SELECT order_id,"
        " SUM(kind = 'charge'), SUM(kind = 'refund'),"
        " SUM(CASE WHEN kind = 'charge' THEN amount_cents ELSE 0 END),"
        " SUM(CASE WHEN kind = 'refund' THEN amount_cents ELSE 0 END)"
        " FROM ledger GROUP BY order_id")
    return {oid: (int(c), int(r), int(cc), int(rc)) for oid, c, r, cc, rc in rows}


def _taken(db: sqlite3.Connection) -> dict[int, dict[str, int]]:
    """order id → SKU → quantity still reserved (reserved − released), orders with movements."""
    rows = db.execute(
        "SELECT order_id, sku, SUM(CASE WHEN kind = 'reserve' THEN quantity ELSE -quantity END)"
        " FROM movements GROUP BY order_id, sku")
    out: dict[int, dict[str, int]] = defaultdict(dict)
    for oid, sku, held in rows:
        out[oid][sku] = int(held)
    return dict(out)


def _stock_mismatches(db: sqlite3.Connection) -> dict[str, dict[str, int]]:
    rows = db.execute(
        "SELECT s.sku, s.initial, s.available,"
        " COALESCE(SUM(CASE WHEN m.kind = 'reserve' THEN m.quantity END), 0),"
        " COALESCE(SUM(CASE WHEN m.kind = 'release' THEN m.quantity END), 0)"
        " FROM stock s LEFT JOIN movements m ON m.sku = s.sku GROUP BY s.sku ORDER BY s.sku")
    return {
        sku: {"initial": initial, "reserved": reserved, "released": released, "available": available}
        for sku, initial, available, reserved, released in rows
        if initial - reserved + released != available
    }
