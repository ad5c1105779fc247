"""The event log on PostgreSQL through asyncpg (a pool of connections).

A new stream takes its id from a sequence and is one autocommitted INSERT; a retried
request id hits the unique index and appends nothing. An append reads the stream's version
and inserts the next ones in one transaction; two writers racing for the same version meet
at the (stream_id, version) key, and the loser gets a ConcurrencyConflict, never an
overwrite. With the outbox on, each statement that inserts events also inserts their outbox
rows (a data-modifying CTE), so both commit together or not at all, at no extra round trip.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from targets.core.pg import open_pool
from targets.eventsourced.events import Event, NewEvent, decode, encode
from targets.eventsourced.log import READ_BATCH, ConcurrencyConflict

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id BIGINT NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    recorded_at_ms BIGINT NOT NULL,
    request_id TEXT UNIQUE,
    UNIQUE (stream_id, version)
);
CREATE SEQUENCE IF NOT EXISTS order_ids;
CREATE TABLE IF NOT EXISTS outbox (position BIGINT PRIMARY KEY);  -- pending rows only
"""
_COLUMNS = "position, stream_id, version, type, data, recorded_at_ms"
_INSERT = ("INSERT INTO events (stream_id, version, type, data, recorded_at_ms, request_id) "
           "VALUES ($1, $2, $3, $4, $5, $6) RETURNING position")
_CREATE = ("INSERT INTO events (stream_id, version, type, data, recorded_at_ms, request_id) "
           "VALUES (nextval('order_ids'), 1, $1, $2, $3, $4) "
           "ON CONFLICT (request_id) DO NOTHING RETURNING position, stream_id")
_PENDING = (f"SELECT {', '.join('e.' + c.strip() for c in _COLUMNS.split(','))} FROM outbox o "
            "JOIN events e ON e.position = o.position ORDER BY o.position LIMIT $1")


def _with_outbox(insert: str, returning: str) -> str:
    """`insert` (… RETURNING position…) that also writes the outbox rows of what it inserted,
    in the same statement and so the same transaction."""
    return (f"WITH e AS ({insert}), o AS (INSERT INTO outbox (position) SELECT position FROM e)"
            f" SELECT {returning} FROM e")


class PostgresLog:
    def __init__(self, pool: Any, outbox: bool = False) -> None:
        self._pool = pool
        self._create = _with_outbox(_CREATE, "position, stream_id") if outbox else _CREATE
        self._insert = _with_outbox(_INSERT, "position") if outbox else _INSERT

    @classmethod
    async def open(cls, spec: str, outbox: bool = False) -> PostgresLog:
        """ValueError, one line, when the database is unreachable or refuses the schema."""
        pool = await open_pool(spec, _SCHEMA, "the event log")
        return cls(pool, outbox)

    async def create_stream(self, first: NewEvent) -> tuple[int, Event | None]:
        row = await self._pool.fetchrow(
            self._create, first.type, encode(first.data), first.recorded_at_ms, first.request_id)
        if row is None:
            sid = await self._pool.fetchval("SELECT stream_id FROM events WHERE request_id = $1",
                                            first.request_id)
            return int(sid), None
        sid = int(row["stream_id"])
        return sid, Event(int(row["position"]), sid, 1, first.type, first.data,
                          first.recorded_at_ms)

    async def append(self, stream_id: int, expected_version: int,
                     events: Sequence[NewEvent]) -> list[Event]:
        import asyncpg

        async with self._pool.acquire() as conn:
            try:
                async with conn.transaction():
                    actual = await conn.fetchval(
                        "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = $1",
                        stream_id)
                    if actual != expected_version:
                        raise ConcurrencyConflict(stream_id, expected_version, actual)
                    stored = []
                    for n, e in enumerate(events, start=1):
                        position = await conn.fetchval(
                            self._insert, stream_id, expected_version + n, e.type, encode(e.data),
                            e.recorded_at_ms, e.request_id)
                        stored.append(Event(position, stream_id, expected_version + n, e.type,
                                            e.data, e.recorded_at_ms))
            except asyncpg.UniqueViolationError:  # a racing writer took the version first
                raise ConcurrencyConflict(stream_id, expected_version, None) from None
        return stored

    async def read_stream(self, stream_id: int, until_ms: int | None = None) -> list[Event]:
        sql = f"SELECT {_COLUMNS} FROM events WHERE stream_id = $1"
        if until_ms is None:
            rows = await self._pool.fetch(sql + " ORDER BY version", stream_id)
        else:
            rows = await self._pool.fetch(sql + " AND recorded_at_ms <= $2 ORDER BY version",
                                          stream_id, until_ms)
        return [_event(r) for r in rows]

    async def read_all(self, after: int = 0) -> AsyncIterator[list[Event]]:
        while True:
            rows = await self._pool.fetch(
                f"SELECT {_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2",
                after, READ_BATCH)
            if not rows:
                return
            batch = [_event(r) for r in rows]
            after = batch[-1].position
            yield batch

    async def seed(self, streams: Sequence[tuple[int, Sequence[NewEvent]]]) -> None:
        rows = [(sid, n, e.type, encode(e.data), e.recorded_at_ms, e.request_id)
                for sid, events in streams for n, e in enumerate(events, start=1)]
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table(
                "events", records=rows,
                columns=["stream_id", "version", "type", "data", "recorded_at_ms", "request_id"])
            await conn.execute("SELECT setval('order_ids', GREATEST((SELECT MAX(stream_id) "
                               "FROM events), 1))")

    async def count(self) -> int:
        return int(await self._pool.fetchval("SELECT COUNT(*) FROM events"))

    async def pending(self, limit: int) -> list[Event]:
        return [_event(r) for r in await self._pool.fetch(_PENDING, limit)]

    async def mark_published(self, positions: Sequence[int]) -> None:
        await self._pool.execute("DELETE FROM outbox WHERE position = ANY($1::bigint[])",
                                 list(positions))

    async def backlog(self) -> int:
        return int(await self._pool.fetchval("SELECT COUNT(*) FROM outbox"))

    async def close(self) -> None:
        await self._pool.close()


def _event(row: Any) -> Event:
    return Event(int(row["position"]), int(row["stream_id"]), int(row["version"]), row["type"],
                 decode(row["data"]), int(row["recorded_at_ms"]))
