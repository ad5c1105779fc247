"""Order stores: one interface, an in-memory backend, a durable SQLite (WAL) backend and a
PostgreSQL backend (targets/core/pg_store.py).

The backend is chosen per run with a spec string: `memory`, `sqlite:PATH` or
`postgresql://…`. The interface is async because PostgreSQL is a network round trip that must
not block the server's event loop; the memory and SQLite backends answer at once (their
coroutines never suspend, so a read-then-write on one loop stays atomic for them).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import Protocol

from targets.core.model import Item, Order
from targets.core.pg import is_postgres


class Store(Protocol):
    async def get(self, order_id: int) -> Order | None: ...

    async def list_by_user(self, user_id: int, limit: int) -> list[Order]: ...

    async def insert(self, order: Order) -> tuple[Order, bool]:
        """Store `order` unless one with its request id exists; return the stored one and
        whether it is new. The store assigns the id (the id of `order` is ignored)."""
        ...

    async def insert_many(self, orders: list[Order]) -> None: ...

    async def set_status(self, order_id: int, status: str) -> Order | None: ...

    async def count(self) -> int: ...

    async def close(self) -> None: ...


class MemoryStore:
    """Dicts behind a lock; the lock matters only if a server uses threads."""

    def __init__(self) -> None:
        self._orders: dict[int, Order] = {}
        self._by_user: dict[int, list[int]] = {}
        self._by_request: dict[str, int] = {}
        self._next_id = 1
        self._lock = threading.Lock()

    async def get(self, order_id: int) -> Order | None:
        return self._orders.get(order_id)

    async def list_by_user(self, user_id: int, limit: int) -> list[Order]:
        ids = self._by_user.get(user_id, [])
        return [self._orders[i] for i in reversed(ids[-limit:])]

    async def insert(self, order: Order) -> tuple[Order, bool]:
        with self._lock:
            existing = self._by_request.get(order.request_id)
            if existing is not None:
                return self._orders[existing], False
            stored = with_id(order, self._next_id)
            self._next_id += 1
            self._orders[stored.id] = stored
            self._by_user.setdefault(stored.user_id, []).append(stored.id)
            self._by_request[stored.request_id] = stored.id
            return stored, True

    async def insert_many(self, orders: list[Order]) -> None:
        for order in orders:
            await self.insert(order)

    async def set_status(self, order_id: int, status: str) -> Order | None:
        with self._lock:
            order = self._orders.get(order_id)
            if order is None:
                return None
            updated = replace_status(order, status)
            self._orders[order_id] = updated
            return updated

    async def count(self) -> int:
        return len(self._orders)

    async def close(self) -> None:
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    user_id INTEGER NOT NULL,
    items TEXT NOT NULL,
    total_cents INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_user ON orders (user_id, id);
"""
_COLUMNS = "id, request_id, user_id, items, total_cents, status, created_at_ms"


class SQLiteStore:
    """Durable store: WAL journal, synchronous=NORMAL (survives a process crash, which is
    what the failure scenarios inflict; an OS crash may lose the last transactions)."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    async def get(self, order_id: int) -> Order | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM orders WHERE id = ?", (order_id,)).fetchone()
        return from_row(row) if row else None

    async def list_by_user(self, user_id: int, limit: int) -> list[Order]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM orders WHERE user_id = ? ORDER BY id DESC LIMIT ?",
            (user_id, limit),
        ).fetchall()
        return [from_row(r) for r in rows]

    async def insert(self, order: Order) -> tuple[Order, bool]:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO orders (request_id, user_id, items, total_cents, status, created_at_ms)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(request_id) DO NOTHING",
                to_row(order),
            )
            new = cur.rowcount == 1
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM orders WHERE request_id = ?", (order.request_id,)
            ).fetchone()
        return from_row(row), new

    async def insert_many(self, orders: list[Order]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO orders (request_id, user_id, items, total_cents, status, created_at_ms)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [to_row(o) for o in orders],
            )
            self._db.execute("COMMIT")

    async def set_status(self, order_id: int, status: str) -> Order | None:
        with self._lock:
            self._db.execute("UPDATE orders SET status = ? WHERE id = ?", (status, order_id))
        return await self.get(order_id)

    async def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM orders").fetchone()[0])

    async def close(self) -> None:
        self._db.close()


async def open_store(spec: str) -> Store:
    """`memory`, `sqlite:PATH` or `postgresql://…`; ValueError, one line, when it cannot open."""
    if is_postgres(spec):
        from targets.core.pg_store import PostgresStore

        return await PostgresStore.open(spec)
    if spec == "memory":
        return MemoryStore()
    if spec.startswith("sqlite:") and len(spec) > len("sqlite:"):
        path = spec[len("sqlite:"):]
        try:
            return SQLiteStore(path)
        except sqlite3.Error as exc:
            raise ValueError(f"cannot open the SQLite store {path!r}: {exc} "
                             "(does its folder exist, and is it writable?)") from None
    raise ValueError(f"unknown store {spec!r}: use 'memory', 'sqlite:PATH' or "
                     "'postgresql://USER@HOST:PORT/DATABASE'")


def with_id(order: Order, order_id: int) -> Order:
    return Order(order_id, order.user_id, order.items, order.total_cents, order.status,
                 order.created_at_ms, order.request_id)


def replace_status(order: Order, status: str) -> Order:
    return Order(order.id, order.user_id, order.items, order.total_cents, status,
                 order.created_at_ms, order.request_id)


def to_row(o: Order) -> tuple[object, ...]:
    items = json.dumps([[i.sku, i.quantity, i.unit_price_cents] for i in o.items])
    return (o.request_id, o.user_id, items, o.total_cents, o.status, o.created_at_ms)


def from_row(row: tuple) -> Order:  # type: ignore[type-arg]
    oid, request_id, user_id, items, total, status, created = row
    return Order(
        id=oid,
        user_id=user_id,
        items=tuple(Item(s, q, p) for s, q, p in json.loads(items)),
        total_cents=total,
        status=status,
        created_at_ms=created,
        request_id=request_id,
    )
