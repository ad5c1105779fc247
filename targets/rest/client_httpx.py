"""REST client on httpx.AsyncClient, a variant of its own: its pool has a different cost."""

from __future__ import annotations

import asyncio

import httpx

from targets.api import DEFAULT_TIMEOUT_S
from targets.core.errors import TransportError
from targets.rest.client_base import JSON_HEADERS, RestOrderClient

POOL_LIMIT = 1000  # connections; above any in-flight count the engine uses
KEEPALIVE_S = 60.0


class HttpxOrderClient(RestOrderClient):
    variant = "httpx"

    def __init__(self, url: str, timeout: float) -> None:
        # httpx applies its timeout to each phase (connect, write, read, pool wait), so one
        # call could wait several times as long as on the other clients; the call as a whole
        # is bounded below, like aiohttp's total timeout and gRPC's deadline.
        self._timeout = timeout
        self._client = httpx.AsyncClient(
            base_url=url.rstrip("/"),
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=POOL_LIMIT,
                                max_keepalive_connections=POOL_LIMIT,
                                keepalive_expiry=KEEPALIVE_S),
        )

    async def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = JSON_HEADERS if body is not None else None
        try:
            async with asyncio.timeout(self._timeout):
                resp = await self._client.request(method, path, content=body, headers=headers)
        except (httpx.TimeoutException, TimeoutError):
            raise TransportError("timeout", f"{method} {path}: no answer in time") from None
        except httpx.ConnectError as exc:
            raise TransportError("refused", f"{method} {path}: {exc}") from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise TransportError("disconnected", f"{method} {path}: {exc!r}") from None
        except httpx.HTTPError as exc:
            raise TransportError("http_error", f"{method} {path}: {exc!r}") from None
        return resp.status_code, resp.content

    async def close(self) -> None:
        await self._client.aclose()


async def connect(url: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> HttpxOrderClient:
    return HttpxOrderClient(url, timeout)
