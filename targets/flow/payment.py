"""The payment service: charge and refund an order, each idempotent per order id.

`payments` holds one row per order, the idempotency guard: a redelivered or retried charge
finds it and charges nothing. `ledger` records every movement of money; reconciliation
counts it (a double charge there means the guard failed). A refund for an order never
charged leaves a tombstone (`voided`), so a charge arriving late (it was slower than the
edge's timeout and the edge already compensated) is refused.
"""

from __future__ import annotations

import sqlite3
import time

from targets.core.errors import InvalidRequest
from targets.core.seed import SeedSpec
from targets.core.validation import check_id
from targets.flow.db import open_db, transaction
from targets.flow.outcomes import declines

CHARGED = "charged"
DECLINED = "declined"
REFUNDED = "refunded"  # charged, then refunded
VOIDED = "voided"  # refunded before any charge: a tombstone that refuses a late charge
PAYMENT_STATES = (CHARGED, DECLINED, REFUNDED, VOIDED)

SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    order_id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,  -- 0 on a tombstone
    amount_cents INTEGER NOT NULL,
    state TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('charge', 'refund')),
    amount_cents INTEGER NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_by_order ON ledger (order_id);
"""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Payments:
    """The payment rules over their own store; one per payment service process."""

    def __init__(self, db: sqlite3.Connection, seed: SeedSpec | int) -> None:
        self.db = db
        self.seed = seed

    @classmethod
    def open(cls, spec: str, seed: SeedSpec | int) -> Payments:
        return cls(open_db(spec, SCHEMA), seed)

    def charge(self, order_id: int, user_id: int, amount_cents: int) -> str:
        """Charge the order once: `charged`, or `declined` (the seeded rule), or the state
        an earlier call left (a retry charges nothing; a tombstone refuses)."""
        check_id(order_id, "order_id")
        check_id(user_id, "user_id")
        if not isinstance(amount_cents, int) or isinstance(amount_cents, bool) or amount_cents < 0:
            raise InvalidRequest("amount_cents must be a non-negative integer", "amount_cents")
        with transaction(self.db) as db:
            row = db.execute("SELECT state FROM payments WHERE order_id = ?", (order_id,)).fetchone()
            if row is not None:
                return str(row[0])
            state = DECLINED if declines(self.seed, user_id) else CHARGED
            now = _now_ms()
            db.execute("INSERT INTO payments VALUES (?, ?, ?, ?, ?)",
                       (order_id, user_id, amount_cents, state, now))
            if state == CHARGED:
                db.execute("INSERT INTO ledger (order_id, kind, amount_cents, at_ms)"
                           " VALUES (?, 'charge', ?, ?)", (order_id, amount_cents, now))
        return state

    def refund(self, order_id: int) -> str:
        """Give the order's money back once: `refunded`; `voided` when nothing was charged
        yet (the tombstone); otherwise the state unchanged (declined, already refunded)."""
        check_id(order_id, "order_id")
        with transaction(self.db) as db:
            row = db.execute("SELECT state, amount_cents FROM payments WHERE order_id = ?",
                             (order_id,)).fetchone()
            now = _now_ms()
            if row is None:
                db.execute("INSERT INTO payments VALUES (?, 0, 0, ?, ?)", (order_id, VOIDED, now))
                return VOIDED
            state, amount = str(row[0]), int(row[1])
            if state != CHARGED:
                return state
            db.execute("UPDATE payments SET state = ?, updated_at_ms = ? WHERE order_id = ?",
                       (REFUNDED, now, order_id))
            db.execute("INSERT INTO ledger (order_id, kind, amount_cents, at_ms)"
                       " VALUES (?, 'refund', ?, ?)", (order_id, amount, now))
        return REFUNDED

    def state(self, order_id: int) -> str | None:
        row = self.db.execute("SELECT state FROM payments WHERE order_id = ?", (order_id,)).fetchone()
        return None if row is None else str(row[0])

    def close(self) -> None:
        self.db.close()
