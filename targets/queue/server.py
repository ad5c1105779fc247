"""The queue target: the order service behind RabbitMQ.

Lookups are RPC (request queue → reply_to/correlation_id); creates are commands whose outcome
is published as an event on the topic exchange. Manual acks with bounded prefetch; a create is
acked only after its event is confirmed by the broker (at-least-once: the core's idempotency
on request_id makes a redelivery harmless). Messages that cannot be served are rejected
without requeue, so they dead-letter into `<ns>.dead` and the worker carries on.

Losing the broker ends the server: when the connection or one of its channels closes, or
the broker cancels a consumer (its queue was deleted), while the server is not stopping, it
logs `broker lost: <reason>` and exits with code 2 (a ServeError). A benchmark target that
silently reconnected would report figures measured across the outage; a dead one is marked
failed by the harness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)

from targets.core.errors import OrderError
from targets.core.service import DEFAULT_LIST_LIMIT, OrderService
from targets.core.validation import create_from_dict
from targets.queue import codec
from targets.queue.topology import (
    CREATED,
    PREFETCH,
    REJECTED,
    declare_shared,
    target_url,
    url_problem,
)
from targets.redact import redact
from targets.serving import ServeConfig, ServeError, announce_ready, run_service

CONNECT_TIMEOUT_S = 5.0
DRAIN_TIMEOUT_S = 10.0  # how long a stop waits for in-flight messages
BROKER_ERRORS = (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError,
                 ConnectionError)

log = logging.getLogger("commbench.queue")


class Worker:
    """Translates messages into OrderService calls and answers; never raises into aio-pika."""

    def __init__(
        self, service: OrderService, replies: AbstractExchange, events: AbstractExchange
    ) -> None:
        self.service = service
        self.replies = replies  # default exchange of the consuming channel (no confirms)
        self.events = events  # topic exchange on a channel with publisher confirms
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def on_rpc(self, message: AbstractIncomingMessage) -> None:
        await self._guard(self._rpc, message)

    async def on_command(self, message: AbstractIncomingMessage) -> None:
        await self._guard(self._command, message)

    async def drained(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()
                return True
        return False

    async def _guard(self, handler: Any, message: AbstractIncomingMessage) -> None:
        self._inflight += 1
        self._idle.clear()
        try:
            await handler(message)
        except BROKER_ERRORS as exc:
            # Not acked: the broker requeues it when the channel is restored.
            log.warning("broker error while handling a message: %r", exc)
        except Exception:  # a bug must neither stop the worker nor loop a poison message
            log.exception("handler failed; dead-lettering the message")
            with contextlib.suppress(*BROKER_ERRORS):
                await message.reject(requeue=False)
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()

    async def _rpc(self, message: AbstractIncomingMessage) -> None:
        try:
            if not message.reply_to or not message.correlation_id:
                raise codec.Malformed("request has no reply_to/correlation_id")
            d = codec.decode_object(message.body)
            op = d.get("op")
            try:
                if op == "get":
                    reply: dict[str, Any] = {"ok": self.service.get_order(d.get("order_id")).to_dict()}
                elif op == "list":
                    orders = self.service.list_user_orders(
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
        try:
            d = codec.decode_object(message.body)
            request_id, client_id = codec.command_keys(d)
        except codec.Malformed as exc:
            await self._dead_letter(message, exc)
            return
        try:
            order, _ = self.service.create_order(create_from_dict(d))
            key = f"{CREATED}.{client_id}"
            event: dict[str, Any] = {"request_id": request_id, "order": order.to_dict()}
        except OrderError as exc:
            key = f"{REJECTED}.{client_id}"
            event = {"request_id": request_id, "error": codec.error_body(exc)}
        await self.events.publish(
            aio_pika.Message(codec.dumps(event), content_type=codec.CONTENT_TYPE,
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=key,
            mandatory=False,  # the client may be gone; observers bind order.created.#
        )
        await message.ack()  # only after the broker confirmed the event

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


async def _connect(amqp_url: str, ns: str) -> AbstractRobustConnection:
    problem = url_problem(amqp_url)
    if problem:
        raise ServeError(problem)
    try:
        return await aio_pika.connect_robust(
            amqp_url, timeout=CONNECT_TIMEOUT_S,
            client_properties={"connection_name": f"commbench queue server {ns}"},
        )
    except Exception as exc:  # refused, DNS, auth, timeout: all one line for the user
        reason = str(exc) or type(exc).__name__
        raise ServeError(
            f"cannot connect to the RabbitMQ broker at {redact(amqp_url)}: {reason}"
        ) from None


async def _serve(config: ServeConfig, service: OrderService) -> None:
    connection = await _connect(config.amqp_url, config.namespace)
    try:
        consuming = await connection.channel(publisher_confirms=False)
        await consuming.set_qos(prefetch_count=PREFETCH)
        confirming = await connection.channel()  # publisher confirms: aio-pika's default
        shared = await declare_shared(consuming, config.namespace)
        events = await confirming.get_exchange(shared.names.events)
        worker = Worker(service, consuming.default_exchange, events)
        tags = [
            (shared.rpc, await shared.rpc.consume(worker.on_rpc)),
            (shared.commands, await shared.commands.consume(worker.on_command)),
        ]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[str] = loop.create_future()

        def on_lost(_sender: object, why: object = None) -> None:
            if not stop.is_set() and not lost.done():
                lost.set_result(str(why) or type(why).__name__ if why is not None
                                else "closed by the broker")

        def on_cancel(frame: object) -> None:
            on_lost(None, f"consumer {getattr(frame, 'consumer_tag', '?')} cancelled by the "
                          "broker (its queue was deleted)")

        for closable in (connection, consuming, confirming):
            closable.close_callbacks.add(on_lost)
        for channel in (consuming, confirming):
            (await channel.get_underlay_channel()).on_consumer_cancel_callbacks.add(on_cancel)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        announce_ready("queue", target_url(config.amqp_url, config.namespace))
        log.info("serving namespace %s on %s", config.namespace, redact(config.amqp_url))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait((stopping, lost), return_when=asyncio.FIRST_COMPLETED)
        if lost.done():
            stopping.cancel()
            log.error("broker lost: %s", lost.result())
            raise ServeError(f"queue server lost the broker at {redact(config.amqp_url)}: "
                             f"{lost.result()}")
        # Graceful stop: no new deliveries, let in-flight ones finish, then close (anything
        # still unacked goes back to the queue).
        for queue, tag in tags:
            with contextlib.suppress(*BROKER_ERRORS):
                await queue.cancel(tag)
        if not await worker.drained(DRAIN_TIMEOUT_S):
            log.warning("stopping with messages in flight; the broker will redeliver them")
    finally:
        await connection.close()


def serve(config: ServeConfig) -> None:
    """Run until SIGTERM/SIGINT; raise ServeError when the broker does not answer."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run_service(config, lambda service: _serve(config, service))
