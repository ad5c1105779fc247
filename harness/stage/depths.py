"""Queue depths of a queue target, once a second, for each of its queues (commands, lookups,
dead letters and, on the chain, each saga step's queue): `ready`, read from the broker
through one AMQP connection of the probe's own, in a thread with its own event loop, and
`unacked`, read from the consuming services' control sockets.

RabbitMQ's AMQP answers a passive declare with the ready count only; messages delivered and
not yet acknowledged are counted by the services that hold them (targets.control.GAUGES), so
a service that does not answer (killed, paused) leaves its queues' `unacked` unknown (the
broker has requeued a killed service's messages: they are in `ready`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from harness.errors import UserError
from harness.stage.control import query_gauges
from harness.stage.stage import StagedTarget
from targets.registry import get_transport

SAMPLE_TIMEOUT_S = 0.5
GAUGE_TIMEOUT_S = 0.1  # a local socket answers in well under that
CONNECT_TIMEOUT_S = 3.0


class DepthProbe:
    def __init__(self, amqp_url: str, queues: list[str], controls: tuple[str, ...] = ()) -> None:
        self.url, self.queues, self.controls = amqp_url, queues, controls
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="queue-depths",
                                        daemon=True)
        self._thread.start()
        self._connection: Any = None
        self._channels: dict[str, Any] = {}  # the probe's loop only

    @classmethod
    def of(cls, target: StagedTarget) -> DepthProbe | None:
        """The probe of a target we stood up whose transport has queues to watch (None: it
        has none, such as a target that only publishes, or it was reached by URL)."""
        transport = get_transport(target.ref.transport)
        if target.namespace is None or target.broker_url is None or not transport.depth_queues:
            return None
        queues = transport.resolve_depth_queues()
        return cls(target.broker_url, queues(target.namespace, transport.roles,
                                             bool(target.stores)),
            tuple(s.control for role, s in target.services.items()
                  if s.control and role not in target.down))

    def sample(self) -> dict[str, tuple[int | None, int | None]]:
        """(ready, unacked) per queue now (None: could not be read within the time limit)."""
        future = asyncio.run_coroutine_threadsafe(self._sample(), self._loop)
        try:
            ready = future.result(SAMPLE_TIMEOUT_S + CONNECT_TIMEOUT_S)
        except (FutureTimeout, Exception):
            future.cancel()
            ready = dict.fromkeys(self.queues)
        unacked = self._unacked()
        return {q: (ready.get(q), unacked.get(q)) for q in self.queues}

    def _unacked(self) -> dict[str, int]:
        """Messages held unacknowledged, summed over every consumer that answered; a queue
        none of whose consumers answered is left out (unknown)."""
        out: dict[str, int] = {}
        for path in self.controls:
            try:
                gauges = query_gauges(path, timeout=GAUGE_TIMEOUT_S)
            except UserError:
                continue
            for key, value in gauges.items():
                kind, _, queue = key.partition(":")
                if kind == "unacked":
                    out[queue] = out.get(queue, 0) + value
        return out

    async def _sample(self) -> dict[str, int | None]:
        """Every queue at once, each on a channel kept open from second to second: opening
        a channel per queue, one queue after another, cost the run's collection loop three
        broker round trips per queue every second."""
        import aio_pika

        if self._connection is None or self._connection.is_closed:
            self._connection = await aio_pika.connect(self.url, timeout=CONNECT_TIMEOUT_S)
            self._channels = {}
        counts = await asyncio.gather(*(self._count(name) for name in self.queues))
        return dict(zip(self.queues, counts, strict=True))

    async def _count(self, name: str) -> int | None:
        try:
            channel = self._channels.get(name)
            if channel is None or channel.is_closed:
                channel = self._channels[name] = await self._connection.channel()
            q = await asyncio.wait_for(channel.declare_queue(name, passive=True),
                                       SAMPLE_TIMEOUT_S)
            return int(q.declaration_result.message_count)
        except Exception:  # not declared (yet; the broker closes the channel), or away: unknown
            self._channels.pop(name, None)
            return None

    def close(self) -> None:
        async def shut() -> None:
            if self._connection is not None:
                with contextlib.suppress(Exception):
                    await self._connection.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(2.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(2.0)
