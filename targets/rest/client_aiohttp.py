"""REST client on aiohttp: one session, one keep-alive connection pool sized for load."""

from __future__ import annotations

import aiohttp

from targets.api import DEFAULT_TIMEOUT_S
from targets.core.errors import TransportError
from targets.rest.client_base import JSON_HEADERS, RestOrderClient

POOL_LIMIT = 1000  # connections; above any in-flight count the engine uses
KEEPALIVE_S = 60.0


class AiohttpOrderClient(RestOrderClient):
    variant = "aiohttp"

    def __init__(self, url: str, timeout: float) -> None:
        self._base = url.rstrip("/")
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POOL_LIMIT, keepalive_timeout=KEEPALIVE_S),
            timeout=aiohttp.ClientTimeout(total=timeout),
            auto_decompress=False,
        )

    async def _request(self, method: str, path: str, body: bytes | None = None,
                       extra: dict[str, str] | None = None) -> tuple[int, bytes]:
        """`extra`: headers besides the JSON content type (a chain edge's deadline)."""
        headers = JSON_HEADERS if body is not None else None
        if extra:
            headers = {**(headers or {}), **extra}
        try:
            async with self._session.request(
                method, self._base + path, data=body, headers=headers
            ) as resp:
                return resp.status, await resp.read()
        except TimeoutError:  # aiohttp's timeout errors subclass it
            raise TransportError("timeout", f"{method} {path}: no answer in time") from None
        except aiohttp.ClientConnectorError as exc:
            raise TransportError("refused", f"{method} {path}: {exc}") from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError,
                aiohttp.ClientPayloadError) as exc:
            raise TransportError("disconnected", f"{method} {path}: {exc!r}") from None
        except aiohttp.ClientError as exc:
            raise TransportError("http_error", f"{method} {path}: {exc!r}") from None

    async def close(self) -> None:
        await self._session.close()


async def connect(url: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> AiohttpOrderClient:
    return AiohttpOrderClient(url, timeout)
