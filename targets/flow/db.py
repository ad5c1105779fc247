"""Each downstream service's own SQLite database: the store spec, WAL, and transactions.

The order flow's stores are SQLite even for `memory` (a private in-memory database), so one
code path serves both; only `sqlite:PATH` is durable and readable after a run.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path


def db_path(spec: str) -> str:
    """`memory` → ":memory:", `sqlite:PATH` → PATH; ValueError for anything else."""
    if spec == "memory":
        return ":memory:"
    if spec.startswith("sqlite:") and len(spec) > len("sqlite:"):
        return spec[len("sqlite:"):]
    raise ValueError(f"unknown store {spec!r}: use 'memory' or 'sqlite:PATH'")


def open_db(spec: str, schema: str) -> sqlite3.Connection:
    """Open (creating if needed) the database of `spec` with `schema` applied. WAL with
    synchronous=NORMAL, as the order store: survives a process crash, which is what the
    failure scenarios inflict."""
    path = db_path(spec)
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(schema)
    except sqlite3.Error as exc:
        raise ValueError(f"cannot open the SQLite store {path!r}: {exc} "
                         "(does its folder exist, and is it writable?)") from None
    return db


def open_read_only(path: str | Path) -> sqlite3.Connection:
    """A read-only connection (reconciliation never writes); `sqlite:` prefixes are accepted."""
    text = str(path).removeprefix("sqlite:")
    if not Path(text).is_file():
        raise ValueError(f"no SQLite store at {text!r}")
    return sqlite3.connect(f"file:{Path(text).resolve()}?mode=ro", uri=True)


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken up front (IMMEDIATE) so a check-then-write cannot race."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
