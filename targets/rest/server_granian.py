"""REST server on granian: the same FastAPI app (`targets.rest.server.build_app`) served by
granian's Rust HTTP stack instead of uvicorn, so the HTTP server is a row of its own
(`rest-granian`) while routes, validation, store and core stay identical.

granian runs embedded (`granian.server.embed`): its worker serves on this process's uvloop
loop (the one `run_service` gives uvicorn too), with granian's own Rust I/O threads beside
it; only the HTTP server differs. The listening socket is ours (`bind_socket`: port 0, a
clear error when the port is taken), handed to granian by file descriptor. The ready line
goes out once the server has answered a request on that socket, not when it merely listens.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from typing import Any

from granian.constants import HTTPModes, Interfaces
from granian.log import LogLevels
from granian.net import SocketHolder
from granian.server.embed import Server

from targets.control import FaultSwitch, controlled
from targets.core.service import OrderService
from targets.rest import wire
from targets.rest.server import build_app
from targets.serving import ServeConfig, ServeError, announce_ready, bind_socket, run_service

READY_TIMEOUT_S = 10.0


class _Server(Server):
    """granian's embedded server on a socket we bound (granian would bind its own)."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        host, port = sock.getsockname()[:2]
        # HTTP/1.1 only, as uvicorn serves; lifespan on (ASGI), as uvicorn's "auto" runs it;
        # errors only in the log (info lines would claim a port granian did not bind).
        super().__init__(app, address=host, port=port, interface=Interfaces.ASGI,
                         http=HTTPModes.http1, backlog=2048, log_level=LogLevels.error)
        self._fd = os.dup(sock.fileno())

    def _init_shared_socket(self) -> None:
        self._ssp = None
        self._shd = SocketHolder(self._fd, False, self.backlog)
        self._sfd = self._fd


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def _answers(url: str) -> None:
    """One GET of the health route over a plain connection: the server is serving."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host.strip("[]"), int(port))
    try:
        writer.write(f"GET {wire.HEALTH_PATH} HTTP/1.1\r\nHost: {host}\r\n"
                     "Connection: close\r\n\r\n".encode())
        status = await reader.readline()
        if b" 200 " not in status:
            raise ServeError(f"granian answered its health check with {status!r}")
    finally:
        writer.close()


def serve(config: ServeConfig) -> None:
    sock = bind_socket(config.host, config.port)  # ServeError: port in use
    url = _url(config.host, sock)

    async def main(service: OrderService) -> None:
        faults = FaultSwitch()
        async with controlled(config.control, faults):  # up before the ready line
            await _serve(_Server(build_app(service, faults=faults), sock), url)

    try:
        run_service(config, main)
    finally:
        sock.close()


async def _serve(server: _Server, url: str) -> None:
    """Serve until SIGTERM/SIGINT; the ready line once the server has answered."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stop)
    serving = asyncio.ensure_future(server.serve())
    ready = asyncio.ensure_future(asyncio.wait_for(_answers(url), READY_TIMEOUT_S))
    await asyncio.wait([serving, ready], return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():  # granian stopped before it answered
        ready.cancel()
        await serving
        raise ServeError("granian stopped before it answered")
    if (exc := ready.exception()) is not None:
        server.stop()
        await serving
        raise ServeError(f"granian did not answer at {url}: {exc!r}")
    announce_ready("rest", url)
    await serving
