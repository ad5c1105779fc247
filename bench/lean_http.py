"""The engine with a lean HTTP/1.1 client, to see the engine's own cost without aiohttp's.

A bench-only OrderClient: keep-alive connections as asyncio Protocols parsed by httptools
(uvicorn's parser), the project's REST wire code for paths and decoding (RestOrderClient),
no timeouts, redirects, cookies or pooling policy. It is NOT a project client variant; it
shows how much of the engine's ceiling is the engine and how much the HTTP library.
Runs the engine (closed loop, get_order) in this process and prints `LEAN {json}`.

Run: python -m bench.lean_http --url http://127.0.0.1:PORT --users 50 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from urllib.parse import urlsplit

import httptools
import uvloop

from bench.measure import closed_scenario, merged
from harness.load.engine import EngineConfig, run_engine
from harness.load.recorder import SecondRecord
from targets.core.errors import TransportError
from targets.rest.client_base import RestOrderClient


class _Conn(asyncio.Protocol):
    """One keep-alive connection: at most one request at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        body, self.body = b"".join(self.body), []
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(TransportError("disconnected", str(exc)))


class LeanRestClient(RestOrderClient):
    variant = "lean (bench only)"

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._hostline = f"Host: {parts.netloc}\r\n".encode()
        self._idle: list[_Conn] = []
        self._all: list[_Conn] = []

    async def _request(self, method: str, path: str, body: bytes | None = None
                       ) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        conn = self._idle.pop() if self._idle else None
        if conn is None or conn.transport is None:
            _, conn = await loop.create_connection(_Conn, self._host, self._port)
            self._all.append(conn)
        head = f"{method} {path} HTTP/1.1\r\n".encode() + self._hostline
        if body is not None:
            head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n".encode()
        conn.waiter = loop.create_future()
        assert conn.transport is not None
        conn.transport.write(head + b"\r\n" + (body or b""))
        result = await conn.waiter
        self._idle.append(conn)
        return result

    async def close(self) -> None:
        for c in self._all:
            if c.transport is not None:
                c.transport.close()


async def drive(url: str, users: int, warmup: float, duration: float) -> dict[str, float]:
    sc = closed_scenario(users, duration, warmup)
    records: list[SecondRecord] = []
    client = LeanRestClient(url)
    t0 = time.monotonic_ns() + 100_000_000
    start, end = t0 + round(warmup * 1e9), t0 + round((warmup + duration) * 1e9)

    async def window() -> tuple[float, float]:
        await asyncio.sleep(max(0, start - time.monotonic_ns()) / 1e9)
        a = os.times()
        await asyncio.sleep(max(0, end - time.monotonic_ns()) / 1e9)
        b = os.times()
        return a.user + a.system, b.user + b.system

    w = asyncio.ensure_future(window())
    try:
        await run_engine(client, EngineConfig(sc, 0, 1, "lean"), t0, records.append)
    finally:
        await client.close()
    c0, c1 = await w
    t = merged(records)  # merging is the parent's work in a real run
    n = t.histogram(("get",), "ok", "latency").get_total_count()
    errors = t.histogram(("get",), "error", "latency").get_total_count()
    return {"rps": n / duration, "cpu": 100 * (c1 - c0) / duration, "errors": errors}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--duration", type=float, default=5.0)
    args = ap.parse_args()
    figures = uvloop.run(drive(args.url, args.users, args.warmup, args.duration))
    print("LEAN " + json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
