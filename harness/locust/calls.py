"""The coroutines locust users run on the bridge's asyncio loop: one request through the
client interface, and opening a process's client for a host. No gevent here.

A host typed into locust's web UI may be anything. `open_client` makes one call before the
client is used (as `commbench verify` does), so a host that is not a target of this
transport is refused once, with one reason, instead of every task failing with it.
"""

from __future__ import annotations

import time

from harness.load.workload import Request
from targets.api import ClientFactory, OrderClient
from targets.core.errors import InvalidRequest, NotFound


class UnusableHost(Exception):
    """The host is not a target of this transport: a URL of the wrong form, or no answer."""


async def open_client(factory: ClientFactory, url: str, timeout: float) -> OrderClient:
    """A client for `url` that has had one answer from it (any answer: order 1 or an error
    reply), else UnusableHost saying why."""
    try:
        client = await factory(url, timeout=timeout)
    except Exception as exc:  # a malformed URL, a refused broker: whatever the client says
        raise UnusableHost(_reason(exc)) from None
    try:
        await client.get_order(1)
    except (NotFound, InvalidRequest):
        pass  # an answer is all the preflight asks for
    except Exception as exc:
        await client.close()
        raise UnusableHost(_reason(exc)) from None
    return client


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    kind = getattr(exc, "kind", None) or type(exc).__name__
    return f"{kind}: {text}" if text else kind


async def send(client: OrderClient, req: Request, record_accepted: bool) -> int | None:
    """One request through the client interface; returns the accept offset (ns) of a queue
    creation (the broker's confirm), else None."""
    if req.op == "noop":
        await client.noop()
        return None
    if req.op == "get":
        await client.get_order(req.order_id)
        return None
    if req.op == "list":
        await client.list_user_orders(req.user_id, req.limit)
        return None
    assert req.create is not None
    if not record_accepted:
        await client.create_order(req.create)
        return None
    t0 = time.monotonic_ns()
    accepted: list[int] = []
    await client.create_order(req.create,
                              on_accepted=lambda: accepted.append(time.monotonic_ns() - t0))
    return accepted[0] if accepted else None
