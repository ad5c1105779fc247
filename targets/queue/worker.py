"""The order service's message handlers: RPC lookups and create commands.

Manual acks: a create is acked only after its outcome event is confirmed by the broker
(at-least-once: the core's idempotency on request_id makes a redelivery harmless). Messages
that cannot be served are rejected without requeue, so they dead-letter into `<ns>.dead` and
the worker carries on.

With `--control`, each handler first awaits the fault switch while a fault is on
(targets/control.py). An injected error on an RPC lookup answers an error reply of kind
`injected`; on any other message (a create command, a saga event) the message is rejected
with requeue, not acked, so the broker delivers it again: the queue's own failure, which
shows up as latency (redeliveries), not as an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from targets.control import FaultSwitch, InjectedFault
from targets.core.errors import OrderError
from targets.core.model import CreateOrder, Order
from targets.core.service import DEFAULT_LIST_LIMIT, OrderService
from targets.core.validation import create_from_dict
from targets.policy.deadline import HEADER, DeadlineExpired, check_header
from targets.queue import codec
from targets.queue.topology import CREATED, REJECTED

BROKER_ERRORS = (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError,
                 ConnectionError)

log = logging.getLogger("commbench.queue")


def persistent(body: bytes) -> aio_pika.Message:
    return aio_pika.Message(body, content_type=codec.CONTENT_TYPE,
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT)


class Guarded:
    """Counts messages in flight (a graceful stop waits for them) and keeps any handler
    failure from reaching aio-pika: never raises, never loops a poison message."""

    def __init__(self, faults: FaultSwitch | None = None) -> None:
        self.faults = faults or FaultSwitch()
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def drained(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()
                return True
        return False

    async def _requeued(self, message: AbstractIncomingMessage) -> bool:
        """Await the fault switch (call it only when `self.faults.active`); on an injected
        error reject `message` with requeue, so the broker redelivers it, and say so."""
        try:
            await self.faults.before()
        except InjectedFault:
            await message.reject(requeue=True)
            return True
        return False

    async def _guard(
        self, handler: Callable[[AbstractIncomingMessage], Awaitable[None]],
        message: AbstractIncomingMessage,
    ) -> None:
        self._inflight += 1
        self._idle.clear()
        try:
            await handler(message)
        except BROKER_ERRORS as exc:
            # Not acked. Delivered on a channel that died with the connection, the broker has
            # requeued it already; delivered on a live one (after a reconnect, consumers may
            # resume before the publishing channel is restored) it is handed back now, or it
            # would stay unacked, its order stuck mid-saga, for as long as the connection lives.
            log.warning("broker error while handling a message: %r", exc)
            with contextlib.suppress(*BROKER_ERRORS, RuntimeError):
                await message.nack(requeue=True)
        except Exception:  # a bug must neither stop the worker nor loop a poison message
            log.exception("handler failed; dead-lettering the message")
            with contextlib.suppress(*BROKER_ERRORS):
                await message.reject(requeue=False)
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()


class Worker(Guarded):
    """Translates messages into OrderService calls and answers; never raises into aio-pika."""

    def __init__(
        self, service: OrderService, replies: AbstractExchange, events: AbstractExchange,
        faults: FaultSwitch | None = None,
    ) -> None:
        super().__init__(faults)
        self.service = service
        self.replies = replies  # default exchange of the consuming channel (no confirms)
        self.events = events  # topic exchange on a channel with publisher confirms

    async def on_rpc(self, message: AbstractIncomingMessage) -> None:
        await self._guard(self._rpc, message)

    async def on_command(self, message: AbstractIncomingMessage) -> None:
        await self._guard(self._command, message)

    async def _rpc(self, message: AbstractIncomingMessage) -> None:
        if message.headers and await self._expired(message):
            return
        try:
            if not message.reply_to or not message.correlation_id:
                raise codec.Malformed("request has no reply_to/correlation_id")
            d = codec.decode_object(message.body)
            op = d.get("op")
            try:
                if self.faults.active and op != "noop":
                    await self.faults.before()
                reply: dict[str, Any]
                if op == "noop":
                    reply = {"ok": None}
                elif op == "get":
                    reply = {"ok": (await self.service.get_order(d.get("order_id"))).to_dict()}
                elif op == "list":
                    orders = await self.service.list_user_orders(
                        d.get("user_id"), d.get("limit", DEFAULT_LIST_LIMIT)
                    )
                    reply = {"ok": [o.to_dict() for o in orders]}
                else:
                    raise codec.Malformed(f"unknown op {op!r}")
            except OrderError as exc:
                reply = {"error": codec.error_body(exc)}
        except codec.Malformed as exc:
            await self._dead_letter(message, exc)
            return
        await self._reply(message, reply)
        await message.ack()

    async def _command(self, message: AbstractIncomingMessage) -> None:
        if self.faults.active and await self._requeued(message):
            return
        if message.headers and await self._expired(message):
            return
        try:
            d = codec.decode_object(message.body)
            request_id, client_id = codec.command_keys(d)
        except codec.Malformed as exc:
            await self._dead_letter(message, exc)
            return
        try:
            await self._create(create_from_dict(d), request_id, client_id)
        except OrderError as exc:
            await self._outcome(REJECTED, request_id, client_id, {"error": codec.error_body(exc)})
        await message.ack()  # only after the broker confirmed what _create published

    async def _create(self, req: CreateOrder, request_id: Any, client_id: str) -> None:
        """Create the order and publish its outcome (the single topology: done at once)."""
        order, _ = await self.service.create_order(req)
        await self.complete(request_id, client_id, order)

    async def complete(self, request_id: Any, client_id: str, order: Order) -> None:
        """The create's *completed* moment: the order's event to the client that sent it."""
        await self._outcome(CREATED, request_id, client_id, {"order": order.to_dict()})

    async def _outcome(self, prefix: str, request_id: Any, client_id: str, body: dict[str, Any]) -> None:
        await self.events.publish(
            persistent(codec.dumps({"request_id": request_id, **body})),
            routing_key=f"{prefix}.{client_id}",
            mandatory=False,  # the client may be gone; observers bind order.created.#
        )

    @staticmethod
    async def _expired(message: AbstractIncomingMessage) -> bool:
        """A request whose sender's deadline (the timeouts policy) has passed is dropped,
        not done: acked, no answer (the sender stopped waiting), counted deadline_expired."""
        try:
            check_header(str(message.headers.get(HEADER) or ""))
        except DeadlineExpired:
            await message.ack()
            return True
        return False

    async def _dead_letter(self, message: AbstractIncomingMessage, why: Exception) -> None:
        log.warning("dead-lettering a malformed message: %s", why)
        await message.reject(requeue=False)
        if message.reply_to and message.correlation_id:
            # The sender is waiting: tell it now rather than let it time out.
            err = {"kind": "invalid", "message": f"malformed message: {why}", "field": "body"}
            await self._reply(message, {"error": err})

    async def _reply(self, message: AbstractIncomingMessage, body: dict[str, Any]) -> None:
        await self.replies.publish(
            aio_pika.Message(codec.dumps(body), content_type=codec.CONTENT_TYPE,
                             correlation_id=message.correlation_id),
            routing_key=message.reply_to or "",
            mandatory=False,  # a caller that gave up has no reply queue any more
        )
