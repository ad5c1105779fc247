"""The notification service's store (queue topology): each OrderCreated recorded once per
order id. Redeliveries bump `deliveries` instead of adding a row, so a test can see that a
duplicate arrived and was absorbed; there is deliberately no UNIQUE constraint, so
reconciliation can catch a duplicate row if the rule here ever fails."""

from __future__ import annotations

import sqlite3
import time

from targets.core.model import Order
from targets.flow.db import open_db, transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    total_cents INTEGER NOT NULL,
    first_at_ms INTEGER NOT NULL,
    deliveries INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_by_order ON notifications (order_id);
"""


class Notifications:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    @classmethod
    def open(cls, spec: str) -> Notifications:
        return cls(open_db(spec, SCHEMA))

    def record(self, order: Order) -> bool:
        """Record that `order` was created; True the first time, False for a redelivery."""
        with transaction(self.db) as db:
            row = db.execute("SELECT id FROM notifications WHERE order_id = ?", (order.id,)).fetchone()
            if row is not None:
                db.execute("UPDATE notifications SET deliveries = deliveries + 1 WHERE id = ?", (row[0],))
                return False
            db.execute("INSERT INTO notifications (order_id, user_id, total_cents, first_at_ms,"
                       " deliveries) VALUES (?, ?, ?, ?, 1)",
                       (order.id, order.user_id, order.total_cents, time.time_ns() // 1_000_000))
        return True

    def deliveries(self, order_id: int) -> int:
        row = self.db.execute("SELECT SUM(deliveries) FROM notifications WHERE order_id = ?",
                              (order_id,)).fetchone()
        return int(row[0] or 0)

    def close(self) -> None:
        self.db.close()
