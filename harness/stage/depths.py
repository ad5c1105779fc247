"""Queue depths of a queue target, once a second: the messages ready in each of its queues
(commands, lookups, dead letters and, on the chain, each saga step's queue), read through
one AMQP connection of the probe's own, in a thread with its own event loop.

RabbitMQ's AMQP answers a passive declare with the ready count only; messages delivered and
not yet acknowledged are not visible this way, so the figure is `ready`, named as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from harness.stage.stage import StagedTarget
from targets.queue.topology import Names
from targets.registry import get_transport

SAMPLE_TIMEOUT_S = 0.5
CONNECT_TIMEOUT_S = 3.0


def queues_of(namespace: str, roles: tuple[str, ...], chain: bool) -> list[str]:
    names = Names(namespace)
    out = [names.commands, names.rpc, names.dead]
    return out + ([names.saga_queue(r) for r in roles] if chain else [])


class DepthProbe:
    def __init__(self, amqp_url: str, queues: list[str]) -> None:
        self.url, self.queues = amqp_url, queues
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="queue-depths",
                                        daemon=True)
        self._thread.start()
        self._connection: Any = None

    @classmethod
    def of(cls, target: StagedTarget) -> DepthProbe | None:
        """The probe of a queue target we stood up (None: not a broker's, or by URL)."""
        if target.namespace is None or target.broker_url is None:
            return None
        return cls(target.broker_url, queues_of(
            target.namespace, get_transport(target.ref.transport).roles, bool(target.stores)))

    def sample(self) -> dict[str, int | None]:
        """Ready messages per queue now (None: could not be read within the time limit)."""
        future = asyncio.run_coroutine_threadsafe(self._sample(), self._loop)
        try:
            return future.result(SAMPLE_TIMEOUT_S + CONNECT_TIMEOUT_S)
        except (FutureTimeout, Exception):
            future.cancel()
            return dict.fromkeys(self.queues)

    async def _sample(self) -> dict[str, int | None]:
        import aio_pika

        if self._connection is None or self._connection.is_closed:
            self._connection = await aio_pika.connect(self.url, timeout=CONNECT_TIMEOUT_S)
        out: dict[str, int | None] = {}
        for name in self.queues:
            try:
                channel = await self._connection.channel()
                async with channel:
                    q = await asyncio.wait_for(channel.declare_queue(name, passive=True),
                                               SAMPLE_TIMEOUT_S)
                    out[name] = q.declaration_result.message_count
            except Exception:  # not declared (yet), or the broker is away: unknown
                out[name] = None
        return out

    def close(self) -> None:
        async def shut() -> None:
            if self._connection is not None:
                with contextlib.suppress(Exception):
                    await self._connection.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(2.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(2.0)
