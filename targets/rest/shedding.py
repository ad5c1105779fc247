"""Counting the requests uvicorn sheds at `limit_concurrency`.

uvicorn answers them 503 itself, before the app sees them, through the module-level ASGI app
`service_unavailable` its httptools protocol calls; wrapping that name is the only hook. Note
uvicorn's limit counts open connections as well as running tasks, so a client holding more
keep-alive connections than the limit is refused even when idle.
"""

from __future__ import annotations

from typing import Any

from targets.policy.events import EVENTS


def count_sheds() -> None:
    """Make every 503 uvicorn sends at its concurrency limit count `edge_shed` (once)."""
    from uvicorn.protocols.http import httptools_impl

    original = httptools_impl.service_unavailable
    if getattr(original, "_counted", False):
        return

    async def counted(scope: Any, receive: Any, send: Any) -> None:
        EVENTS.add("edge_shed")
        await original(scope, receive, send)

    counted._counted = True  # type: ignore[attr-defined]
    httptools_impl.service_unavailable = counted  # type: ignore[assignment]
