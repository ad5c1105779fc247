"""REST probe client: a minimal HTTP/1.1 keep-alive client on httptools (uvicorn's parser).

A *probe*, not a production client: no redirects, cookies, proxies, TLS, compression or
retries; just keep-alive connections as asyncio Protocols. It speaks the same contract and
error kinds as the aiohttp and httpx clients (timeout, refused, disconnected, http_error for
a response that does not parse, the server's error body through targets.rest.wire), so a run
with it measures the server with almost no client cost, and the difference to `rest` is the
client library's cost. Results label it as a probe (the registry's `probes`).

An answer must carry content-length or chunked encoding (uvicorn and granian always do):
httptools cannot be told of an end of stream, so a body ended by closing the connection
counts as `disconnected`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from urllib.parse import urlsplit

import httptools

from targets.api import DEFAULT_TIMEOUT_S
from targets.core.errors import TransportError
from targets.rest.client_base import RestOrderClient

POOL_LIMIT = 1000  # connections, as the other clients; beyond it a call waits for a free one


class _Conn(asyncio.Protocol):
    """One keep-alive connection, one exchange at a time. The outcome of an exchange is the
    future `waiter`: (status, body), or a TransportError when the connection breaks or the
    answer does not parse."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []
        self.reusable = True  # false once the server asked to close or the exchange failed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(TransportError("http_error", f"malformed HTTP response: {exc}"))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        body, self.body = b"".join(self.body), []
        if not self.parser.should_keep_alive():
            self.reusable = False
        if waiter is None or waiter.done():  # an answer nobody asked for: not our protocol
            self.fail(TransportError("http_error", "unsolicited HTTP response"))
        else:
            waiter.set_result((self.parser.get_status_code(), body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.reusable = False
        why = f": {exc!r}" if exc else ""
        self._reject(TransportError("disconnected", f"server closed the connection{why}"))

    def fail(self, error: TransportError) -> None:
        """End the exchange with `error` and drop the connection (its state is unknown)."""
        self.reusable = False
        self._reject(error)
        if self.transport is not None:
            self.transport.abort()

    def _reject(self, error: TransportError) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    @property
    def idle(self) -> bool:
        return self.reusable and self.transport is not None and not self.transport.is_closing()


class ProbeOrderClient(RestOrderClient):
    variant = "probe"

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the probe client speaks plain http://HOST:PORT only, got {url!r}")
        self._host, self._port = parts.hostname, parts.port or 80
        self._prefix = parts.path.rstrip("/")
        self._hostline = f"Host: {parts.netloc}\r\n".encode()
        self._timeout = timeout
        self._idle: list[_Conn] = []
        self._open: set[_Conn] = set()
        self._waiting: deque[asyncio.Future[None]] = deque()  # calls waiting for a slot

    async def _request(self, method: str, path: str, body: bytes | None = None
                       ) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        conn = await self._acquire(loop, deadline, method, path)
        head = f"{method} {self._prefix}{path} HTTP/1.1\r\n".encode() + self._hostline
        if body is not None:
            head += b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body)
        waiter = conn.waiter = loop.create_future()
        expiry = loop.call_at(deadline, conn.fail,
                              TransportError("timeout", f"{method} {path}: no answer in time"))
        try:
            assert conn.transport is not None
            conn.transport.write(head + b"\r\n" + body if body else head + b"\r\n")
            return await waiter
        except asyncio.CancelledError:
            conn.fail(TransportError("disconnected", "cancelled"))  # a late answer is unknown
            raise
        finally:
            expiry.cancel()
            self._release(conn)

    async def _acquire(self, loop: asyncio.AbstractEventLoop, deadline: float,
                       method: str, path: str) -> _Conn:
        """An idle keep-alive connection, else a new one (within POOL_LIMIT and the deadline)."""
        while True:
            while self._idle:
                conn = self._idle.pop()
                if conn.idle:
                    return conn
                self._open.discard(conn)
            if len(self._open) < POOL_LIMIT:
                break
            slot = loop.create_future()
            self._waiting.append(slot)
            try:
                async with asyncio.timeout_at(deadline):
                    await slot
            except TimeoutError:
                raise TransportError("timeout", f"{method} {path}: no free connection in time") \
                    from None
            finally:
                if slot in self._waiting:
                    self._waiting.remove(slot)
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(_Conn, self._host, self._port)
        except TimeoutError:
            raise TransportError("timeout", f"{method} {path}: no connection in time") from None
        except OSError as exc:
            raise TransportError("refused", f"{method} {path}: {exc}") from None
        self._open.add(conn)
        return conn

    def _release(self, conn: _Conn) -> None:
        if conn.idle and conn.waiter is None:
            self._idle.append(conn)
        else:
            self._open.discard(conn)
            if conn.transport is not None:
                conn.transport.abort()
        while self._waiting:
            slot = self._waiting.popleft()
            if not slot.done():
                slot.set_result(None)
                break

    async def close(self) -> None:
        for conn in list(self._open):
            if conn.transport is not None:
                conn.transport.close()
        self._open.clear()
        self._idle.clear()


async def connect(url: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> ProbeOrderClient:
    return ProbeOrderClient(url, timeout)
