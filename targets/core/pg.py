"""A PostgreSQL `--store` spec to an asyncpg pool on the schema it names, for every store
that lives in PostgreSQL (the core's order store, the eventsourced log), so they read specs,
make schemas and report failures alike.

`postgresql://USER@HOST:PORT/DB?schema=NAME`: the optional `schema` query parameter puts the
store's tables in a schema of their own (created when missing), so runs sharing a database
never collide; the stage names one per target and drops it when the target stops.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from targets.redact import redact

POOL_MAX = 10
CONNECT_TIMEOUT_S = 5.0
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def is_postgres(spec: str) -> bool:
    return spec.startswith(("postgresql://", "postgres://"))


def split_schema(url: str) -> tuple[str, str | None]:
    """`postgresql://…?schema=NAME` → (the URL without it, NAME); ValueError on a bad name."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    if schema is not None and not SCHEMA_NAME.match(schema):
        raise ValueError(f"schema {schema!r}: use lower-case letters, digits and _")
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


async def connect_pool(url: str, schema: str | None = None, max_size: int = POOL_MAX) -> Any:
    """An asyncpg pool on `url` (search_path = `schema`); ValueError with one line when the
    database cannot be reached or refuses us."""
    import asyncpg

    settings = {"search_path": schema} if schema else {}
    try:
        return await asyncpg.create_pool(url, min_size=1, max_size=max_size,
                                         timeout=CONNECT_TIMEOUT_S, server_settings=settings)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
            ValueError) as exc:
        raise ValueError(f"cannot use the PostgreSQL store {redact(url)}: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                         ) from None


async def open_pool(spec: str, ddl: str, what: str) -> Any:
    """A pool on the spec's database and schema (created when missing), with `ddl` run once
    (idempotent CREATE … IF NOT EXISTS). ValueError, one line, naming `what` when the
    database is unreachable or refuses the schema or the tables."""
    import asyncpg

    url, schema = split_schema(spec)
    pool = None
    try:
        if schema:  # created on a plain connection, before search_path points at it
            pool = await connect_pool(url, max_size=1)
            await pool.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            await pool.close()
        pool = await connect_pool(url, schema)
        await pool.execute(ddl)
    except asyncpg.PostgresError as exc:
        if pool is not None:
            await pool.close()
        raise ValueError(f"cannot set up {what} in {redact(url)}: "
                         f"{type(exc).__name__}: {exc}") from None
    return pool
