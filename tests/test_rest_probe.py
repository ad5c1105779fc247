"""The REST probe client (rest:probe) where it differs from the library clients: what a
server that breaks HTTP does to it (a clear error kind, never a hang), keep-alive reuse, a
late answer after a timeout that must not reach the next call. Its contract and the shared
failure mapping are in test_rest.py and test_conformance.py, which cover every variant."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from targets.core.errors import TransportError
from targets.core.seed import SeedSpec, seed_orders
from targets.registry import get_transport
from targets.rest.client_probe import ProbeOrderClient, connect
from targets.serving import ServeConfig
from tests.conftest import run

DEADLINE_S = 5.0  # every call below must end well before this; a hang fails the test
ORDER = seed_orders(SeedSpec(users=1, orders_per_user=1))[0]
ORDER_BODY = (f'{{"id":{ORDER.id},"user_id":{ORDER.user_id},"created_at_ms":{ORDER.created_at_ms},'
              f'"items":[],"total_cents":0,"status":"created"}}').encode()

Handler = Callable[[int, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _ok(body: bytes = ORDER_BODY, extra: str = "") -> bytes:
    return (f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}"
            f"\r\n{extra}\r\n").encode() + body


@asynccontextmanager
async def _server(handle: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A socket server calling `handle(connection number, reader, writer)`; yields its URL
    and the list of connection numbers accepted so far."""
    accepted: list[int] = []

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(len(accepted))
        try:
            await handle(accepted[-1], reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", accepted
    finally:
        server.close()


async def _kind(client: ProbeOrderClient) -> str:
    with pytest.raises(TransportError) as err:
        await asyncio.wait_for(client.get_order(1), DEADLINE_S)
    return err.value.kind


@pytest.mark.parametrize(("answer", "kind"), [
    (b"GARBAGE\r\n\r\n", "http_error"),  # not HTTP at all (aiohttp: ClientResponseError)
    (b"HTTP/1.1 200 OK\r\ncontent-length: nope\r\n\r\n", "http_error"),  # a broken header
    (b"HTTP/1.1 200 OK\r\ncontent-length: 500\r\n\r\n{\"id\":", "disconnected"),  # cut body
    (b"HTTP/1.1 200 OK\r\ncontent-le", "disconnected"),  # cut in the head
])
def test_a_broken_answer_is_a_clear_error_kind_not_a_hang(answer: bytes, kind: str) -> None:
    async def handle(_n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()

    async def main() -> None:
        async with _server(handle) as (url, _):
            client = await connect(url, timeout=DEADLINE_S * 2)  # the error, not the timeout
            try:
                assert await _kind(client) == kind
            finally:
                await client.close()

    run(main())


def test_keep_alive_reuses_one_connection_and_reconnects_after_a_close() -> None:
    """Three calls on one connection; the third answer says `connection: close`, so the
    fourth call opens a second connection instead of writing into a closed one."""

    async def handle(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for k in range(3 if n == 0 else 1):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(_ok(extra="connection: close\r\n" if k == 2 else ""))
            await writer.drain()

    async def main() -> None:
        async with _server(handle) as (url, accepted):
            client = await connect(url, timeout=DEADLINE_S)
            try:
                for _ in range(4):
                    got = await asyncio.wait_for(client.get_order(ORDER.id), DEADLINE_S)
                    assert got.id == ORDER.id
                assert accepted == [0, 1]
            finally:
                await client.close()

    run(main())


def test_a_late_answer_after_a_timeout_never_reaches_the_next_call() -> None:
    """The first connection answers only once the second has been asked (a late answer with
    another order id); the timed-out connection must be dropped, not reused."""
    second_asked = asyncio.Event()

    async def handle(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if n == 0:
            await asyncio.wait_for(second_asked.wait(), DEADLINE_S)
            writer.write(_ok(ORDER_BODY.replace(b'"id":1,', b'"id":99,')))
        else:
            second_asked.set()
            writer.write(_ok())
        await writer.drain()

    async def main() -> None:
        async with _server(handle) as (url, accepted):
            client = await connect(url, timeout=0.3)
            try:
                assert await _kind(client) == "timeout"
                got = await asyncio.wait_for(client.get_order(ORDER.id), DEADLINE_S)
                assert got.id == ORDER.id and accepted == [0, 1]
            finally:
                await client.close()

    run(main())


def test_the_probe_is_registered_as_a_probe() -> None:
    rest = get_transport("rest")
    assert rest.is_probe("probe") and not rest.is_probe("aiohttp")
    assert not any(get_transport(t).probes for t in ("grpc", "queue"))


def test_against_uvicorn_many_calls_at_once(launcher) -> None:
    """200 concurrent lookups through real uvicorn: every answer is the seeded order."""
    seed = SeedSpec(users=5, orders_per_user=3)
    svc = launcher.start("rest", ServeConfig(seed=seed))
    orders = seed_orders(seed)

    async def main() -> None:
        client = await connect(svc.url, timeout=DEADLINE_S)
        try:
            calls = [client.get_order(orders[k % len(orders)].id) for k in range(200)]
            got = await asyncio.wait_for(asyncio.gather(*calls), DEADLINE_S * 4)
            assert [o.to_dict() for o in got] == [orders[k % len(orders)].to_dict()
                                                  for k in range(200)]
        finally:
            await client.close()

    run(main())
