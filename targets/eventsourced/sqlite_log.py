"""The event log on SQLite: one table, WAL, every write in a `BEGIN IMMEDIATE` transaction
so the version check and the insert are one step even across processes sharing the file.
Calls are synchronous on the event loop, as the core's SQLite store is (fast, local).
The outbox is a second table written in the same transaction as the events it names."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence

from targets.eventsourced.events import Event, NewEvent, decode, encode
from targets.eventsourced.log import READ_BATCH, ConcurrencyConflict

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id INTEGER NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    recorded_at_ms INTEGER NOT NULL,
    request_id TEXT UNIQUE,
    UNIQUE (stream_id, version)
);
-- pending outbox rows only: a row is deleted once the broker confirmed its event, so the
-- table's size is the backlog and it never grows with the log
CREATE TABLE IF NOT EXISTS outbox (position INTEGER PRIMARY KEY);
"""
_INSERT = ("INSERT INTO events (stream_id, version, type, data, recorded_at_ms, request_id)"
           " VALUES (?, ?, ?, ?, ?, ?)")
_COLUMNS = "position, stream_id, version, type, data, recorded_at_ms"
_PENDING = (f"SELECT {', '.join('e.' + c.strip() for c in _COLUMNS.split(','))} FROM outbox o "
            "JOIN events e ON e.position = o.position ORDER BY o.position LIMIT ?")


class SQLiteLog:
    def __init__(self, path: str, outbox: bool = False) -> None:
        self._outbox = outbox
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise ValueError(f"cannot open the SQLite event log {path!r}: {exc} "
                             "(does its folder exist, and is it writable?)") from None

    async def create_stream(self, first: NewEvent) -> tuple[int, Event | None]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT stream_id FROM events WHERE request_id = ?",
                             (first.request_id,)).fetchone()
            if row is not None:
                db.execute("ROLLBACK")
                return int(row[0]), None
            stream_id = int(db.execute("SELECT COALESCE(MAX(stream_id), 0) + 1 FROM events")
                            .fetchone()[0])
            event = self._insert(stream_id, 1, first)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return stream_id, event

    async def append(self, stream_id: int, expected_version: int,
                     events: Sequence[NewEvent]) -> list[Event]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            actual = int(db.execute("SELECT COALESCE(MAX(version), 0) FROM events "
                                    "WHERE stream_id = ?", (stream_id,)).fetchone()[0])
            if actual != expected_version:
                raise ConcurrencyConflict(stream_id, expected_version, actual)
            try:
                stored = [self._insert(stream_id, expected_version + n, e)
                          for n, e in enumerate(events, start=1)]
            except sqlite3.IntegrityError:  # the (stream, version) key: never overwritten
                raise ConcurrencyConflict(stream_id, expected_version, None) from None
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return stored

    def _insert(self, stream_id: int, version: int, e: NewEvent) -> Event:
        data = encode(e.data)
        cur = self._db.execute(_INSERT, (stream_id, version, e.type, data, e.recorded_at_ms,
                                         e.request_id))
        position = int(cur.lastrowid or 0)
        if self._outbox:  # inside the caller's transaction: committed with the event or not at all
            self._db.execute("INSERT INTO outbox (position) VALUES (?)", (position,))
        return Event(position, stream_id, version, e.type, e.data, e.recorded_at_ms)

    async def read_stream(self, stream_id: int, until_ms: int | None = None) -> list[Event]:
        sql = f"SELECT {_COLUMNS} FROM events WHERE stream_id = ?"
        args: tuple[int, ...] = (stream_id,)
        if until_ms is not None:
            sql, args = sql + " AND recorded_at_ms <= ?", (stream_id, until_ms)
        return [_event(r) for r in self._db.execute(sql + " ORDER BY version", args)]

    async def read_all(self, after: int = 0) -> AsyncIterator[list[Event]]:
        while True:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
                (after, READ_BATCH)).fetchall()
            if not rows:
                return
            batch = [_event(r) for r in rows]
            after = batch[-1].position
            yield batch

    async def seed(self, streams: Sequence[tuple[int, Sequence[NewEvent]]]) -> None:
        rows = [(sid, n, e.type, encode(e.data), e.recorded_at_ms, e.request_id)
                for sid, events in streams for n, e in enumerate(events, start=1)]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(_INSERT, rows)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    async def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    async def pending(self, limit: int) -> list[Event]:
        return [_event(r) for r in self._db.execute(_PENDING, (limit,))]

    async def mark_published(self, positions: Sequence[int]) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")  # one commit for the batch, not one per row
        try:
            db.executemany("DELETE FROM outbox WHERE position = ?", [(p,) for p in positions])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    async def backlog(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    async def close(self) -> None:
        self._db.close()


def _event(row: tuple) -> Event:  # type: ignore[type-arg]
    position, stream_id, version, kind, data, recorded = row
    return Event(position, stream_id, version, kind, decode(data), recorded)
