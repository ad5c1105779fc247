"""The inventory service: reserve all the items of an order, or none; release them.

Both are idempotent per order id: `reservations` holds one row per order (the guard), so a
redelivered or retried reserve takes nothing more. `movements` records every change of stock
and `stock` keeps each SKU's initial and available count, so reconciliation can check that
initial − reserved + released = available. A release for an order never reserved leaves a
tombstone (`voided`) that refuses a late reserve, as the payment's refund does.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable

from targets.core.errors import InvalidRequest
from targets.core.model import CATALOGUE
from targets.core.seed import SeedSpec
from targets.core.validation import MAX_ITEMS, MAX_QUANTITY, check_id
from targets.flow.db import open_db, transaction
from targets.flow.outcomes import initial_stock

RESERVED = "reserved"
OUT_OF_STOCK = "out_of_stock"
RELEASED = "released"  # reserved, then released
VOIDED = "voided"  # released before any reserve: a tombstone that refuses a late reserve
RESERVATION_STATES = (RESERVED, OUT_OF_STOCK, RELEASED, VOIDED)

SCHEMA = """
CREATE TABLE IF NOT EXISTS stock (
    sku TEXT PRIMARY KEY,
    initial INTEGER NOT NULL,
    available INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reservations (
    order_id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS movements (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL,
    sku TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('reserve', 'release')),
    quantity INTEGER NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS movements_by_order ON movements (order_id);
"""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _lines(items: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Quantities per SKU (an order may name a SKU twice); InvalidRequest for bad lines."""
    wanted: dict[str, int] = {}
    for n, (sku, quantity) in enumerate(items):
        if n >= MAX_ITEMS:
            raise InvalidRequest(f"a reservation holds at most {MAX_ITEMS} items", "items")
        if sku not in CATALOGUE:
            raise InvalidRequest(f"items[{n}].sku {sku!r} is not in the catalogue", f"items[{n}].sku")
        if not isinstance(quantity, int) or isinstance(quantity, bool) or not 1 <= quantity <= MAX_QUANTITY:
            raise InvalidRequest(f"items[{n}].quantity must be an integer from 1 to {MAX_QUANTITY}",
                                 f"items[{n}].quantity")
        wanted[sku] = wanted.get(sku, 0) + quantity
    if not wanted:
        raise InvalidRequest("a reservation needs at least one item", "items")
    return wanted


class Inventory:
    """The inventory rules over their own store; one per inventory service process."""

    def __init__(self, db: sqlite3.Connection, seed: SeedSpec | int) -> None:
        self.db = db
        with transaction(db):  # a durable store keeps its stock; a new one gets the seed's
            db.executemany("INSERT OR IGNORE INTO stock VALUES (?, ?, ?)",
                           [(sku, n, n) for sku, n in initial_stock(seed).items()])

    @classmethod
    def open(cls, spec: str, seed: SeedSpec | int) -> Inventory:
        return cls(open_db(spec, SCHEMA), seed)

    def reserve(self, order_id: int, items: Iterable[tuple[str, int]]) -> str:
        """Take every item's quantity, or nothing: `reserved` or `out_of_stock`; a retry
        returns the first answer and takes nothing more; a tombstone refuses (`voided`)."""
        check_id(order_id, "order_id")
        wanted = _lines(items)
        with transaction(self.db) as db:
            row = db.execute("SELECT state FROM reservations WHERE order_id = ?",
                             (order_id,)).fetchone()
            if row is not None:
                return str(row[0])
            now = _now_ms()
            available = dict(db.execute(
                f"SELECT sku, available FROM stock WHERE sku IN ({','.join('?' * len(wanted))})",
                list(wanted)).fetchall())
            state = RESERVED if all(available.get(s, 0) >= q for s, q in wanted.items()) \
                else OUT_OF_STOCK
            if state == RESERVED:
                for sku, quantity in wanted.items():
                    db.execute("UPDATE stock SET available = available - ? WHERE sku = ?",
                               (quantity, sku))
                    db.execute("INSERT INTO movements (order_id, sku, kind, quantity, at_ms)"
                               " VALUES (?, ?, 'reserve', ?, ?)", (order_id, sku, quantity, now))
            db.execute("INSERT INTO reservations VALUES (?, ?, ?)", (order_id, state, now))
        return state

    def release(self, order_id: int) -> str:
        """Put a reservation back once: `released`; `voided` when nothing was reserved yet
        (the tombstone); otherwise the state unchanged."""
        check_id(order_id, "order_id")
        with transaction(self.db) as db:
            row = db.execute("SELECT state FROM reservations WHERE order_id = ?",
                             (order_id,)).fetchone()
            now = _now_ms()
            if row is None:
                db.execute("INSERT INTO reservations VALUES (?, ?, ?)", (order_id, VOIDED, now))
                return VOIDED
            if row[0] != RESERVED:
                return str(row[0])
            taken = db.execute("SELECT sku, quantity FROM movements WHERE order_id = ?"
                               " AND kind = 'reserve'", (order_id,)).fetchall()
            for sku, quantity in taken:
                db.execute("UPDATE stock SET available = available + ? WHERE sku = ?", (quantity, sku))
                db.execute("INSERT INTO movements (order_id, sku, kind, quantity, at_ms)"
                           " VALUES (?, ?, 'release', ?, ?)", (order_id, sku, quantity, now))
            db.execute("UPDATE reservations SET state = ?, updated_at_ms = ? WHERE order_id = ?",
                       (RELEASED, now, order_id))
        return RELEASED

    def available(self, sku: str) -> int:
        row = self.db.execute("SELECT available FROM stock WHERE sku = ?", (sku,)).fetchone()
        return 0 if row is None else int(row[0])

    def close(self) -> None:
        self.db.close()
