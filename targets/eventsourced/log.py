"""The event log's interface and how a `--store` spec picks its database.

`memory` is SQLite in memory (the analogue of the other targets' memory store), `sqlite:PATH`
a SQLite file (WAL), `postgresql://…` PostgreSQL through asyncpg; an optional `schema=NAME`
query parameter puts the log in its own schema (created when missing) so runs sharing one
database never collide.

With `outbox` on, every append also writes one outbox row per event in the same transaction
(targets/eventsourced/outbox.py publishes them): an event is in the outbox if and only if it
was appended, whatever crashes. Seeded streams are the data a run starts from and get none.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from targets.eventsourced.events import Event, NewEvent

READ_BATCH = 10_000  # events per read while replaying the log


class ConcurrencyConflict(Exception):
    """An append whose expected version is not the stream's version: someone else appended
    first. Refused, never merged: the caller re-reads and decides."""

    def __init__(self, stream_id: int, expected: int, actual: int | None) -> None:
        seen = "" if actual is None else f", the stream is at {actual}"
        super().__init__(f"order {stream_id}: expected version {expected}{seen}")
        self.stream_id, self.expected, self.actual = stream_id, expected, actual


class EventLog(Protocol):
    async def create_stream(self, first: NewEvent) -> tuple[int, Event | None]:
        """Start a new stream (the log picks its id) with `first` as version 1. When an event
        with `first.request_id` exists, append nothing: its stream id and None."""
        ...

    async def append(self, stream_id: int, expected_version: int,
                     events: Sequence[NewEvent]) -> list[Event]:
        """Append after `expected_version`; ConcurrencyConflict when the stream is elsewhere."""
        ...

    async def read_stream(self, stream_id: int, until_ms: int | None = None) -> list[Event]:
        """A stream's events in version order, those recorded at or before `until_ms` only."""
        ...

    def read_all(self, after: int = 0) -> AsyncIterator[list[Event]]:
        """Every event after position `after`, in position order, in batches."""
        ...

    async def seed(self, streams: Sequence[tuple[int, Sequence[NewEvent]]]) -> None:
        """Append whole streams with the given ids (seed data), in one transaction."""
        ...

    async def count(self) -> int: ...

    async def pending(self, limit: int) -> list[Event]:
        """The oldest outbox rows not yet published, as their events, in position order."""
        ...

    async def mark_published(self, positions: Sequence[int]) -> None:
        """Remove these rows from the outbox: the broker has confirmed them."""
        ...

    async def backlog(self) -> int:
        """Outbox rows not yet published."""
        ...

    async def close(self) -> None: ...


async def open_log(spec: str, outbox: bool = False) -> EventLog:
    """The log a store spec names; ValueError with a one-line reason when it cannot open.
    `outbox`: appends write outbox rows too (the outbox tables exist either way, so a log
    written with the outbox and reopened without it keeps its pending rows)."""
    if spec.startswith(("postgresql://", "postgres://")):
        from targets.eventsourced.pg_log import PostgresLog

        return await PostgresLog.open(spec, outbox)
    from targets.eventsourced.sqlite_log import SQLiteLog

    if spec == "memory":
        return SQLiteLog(":memory:", outbox)
    if spec.startswith("sqlite:") and len(spec) > len("sqlite:"):
        return SQLiteLog(spec[len("sqlite:"):], outbox)
    raise ValueError(f"unknown store {spec!r}: use 'memory', 'sqlite:PATH' or "
                     "'postgresql://USER@HOST:PORT/DATABASE'")
