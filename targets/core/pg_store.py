"""The core's order store on PostgreSQL through asyncpg (a pool of connections), so REST,
gRPC and the queue can run on the same database as the eventsourced log and a run compares
all four there. Same table as the SQLite store; the schema handling (`?schema=NAME`, one per
target run, dropped by the stage) is targets/core/pg.py's, shared with the event log.

An insert is one statement: `ON CONFLICT (request_id) DO NOTHING` makes a retried request
id store nothing, and the row the request id names is read back in the same round trip.
"""

from __future__ import annotations

from typing import Any

from targets.core.model import Order
from targets.core.pg import open_pool
from targets.core.store import from_row, to_row

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    user_id BIGINT NOT NULL,
    items TEXT NOT NULL,
    total_cents BIGINT NOT NULL,
    status TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_user ON orders (user_id, id);
"""
_COLUMNS = "id, request_id, user_id, items, total_cents, status, created_at_ms"
_VALUES = "($1, $2, $3, $4, $5, $6)"
_FIELDS = "(request_id, user_id, items, total_cents, status, created_at_ms)"
# new: the inserted row; a retry: nothing inserted, so the UNION's second half finds the first
_INSERT = (f"WITH new AS (INSERT INTO orders {_FIELDS} VALUES {_VALUES} "
           f"ON CONFLICT (request_id) DO NOTHING RETURNING {_COLUMNS}) "
           f"SELECT true AS new, {_COLUMNS} FROM new UNION ALL "
           f"SELECT false, {_COLUMNS} FROM orders WHERE request_id = $1 "
           "AND NOT EXISTS (SELECT 1 FROM new)")


class PostgresStore:
    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, spec: str) -> PostgresStore:
        """ValueError, one line, when the database is unreachable or refuses the schema."""
        return cls(await open_pool(spec, _SCHEMA, "the order store"))

    async def get(self, order_id: int) -> Order | None:
        row = await self._pool.fetchrow(f"SELECT {_COLUMNS} FROM orders WHERE id = $1", order_id)
        return _order(row) if row else None

    async def list_by_user(self, user_id: int, limit: int) -> list[Order]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM orders WHERE user_id = $1 ORDER BY id DESC LIMIT $2",
            user_id, limit)
        return [_order(r) for r in rows]

    async def insert(self, order: Order) -> tuple[Order, bool]:
        row = await self._pool.fetchrow(_INSERT, *to_row(order))
        return _order(row), bool(row["new"])

    async def insert_many(self, orders: list[Order]) -> None:
        """Seed rows in one COPY; the identity numbers them in order (1, 2, … on a new
        table), as the SQLite store's autoincrement does."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table(
                "orders", records=[to_row(o) for o in orders],
                columns=["request_id", "user_id", "items", "total_cents", "status",
                         "created_at_ms"])

    async def set_status(self, order_id: int, status: str) -> Order | None:
        row = await self._pool.fetchrow(
            f"UPDATE orders SET status = $2 WHERE id = $1 RETURNING {_COLUMNS}", order_id, status)
        return _order(row) if row else None

    async def count(self) -> int:
        return int(await self._pool.fetchval("SELECT COUNT(*) FROM orders"))

    async def close(self) -> None:
        await self._pool.close()


def _order(row: Any) -> Order:
    return from_row(tuple(row[c.strip()] for c in _COLUMNS.split(",")))
