"""The queue target's client (aio-pika): RPC lookups and confirmed create commands.

One robust connection. Lookups go out on a channel without confirms (the reply is the
end-to-end acknowledgement, and the client timeout covers a lost request); creates go out on
a channel with publisher confirms, whose ack is the *accepted* moment, and resolve when the
order's event reaches this client's event queue (the *completed* moment). Replies and
events are matched to waiting callers by correlation id and request id.

When the broker goes away, calls made meanwhile fail at once (kind `broker`) and lookups in
flight fail; a create in flight waits for the reconnect (within its own timeout) and sends
its command again with the same request id: unconfirmed, the broker may never have had it;
confirmed, its outcome event may have been lost with this client's exclusive event queue.
The order service is idempotent on request_id, so the resend creates nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import Callable
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from aiormq.exceptions import DeliveryError

from targets.api import DEFAULT_TIMEOUT_S
from targets.core.errors import OrderError, TransportError
from targets.core.model import CreateOrder, Order
from targets.core.service import DEFAULT_LIST_LIMIT
from targets.policy.deadline import HEADER, header_value
from targets.queue import codec
from targets.queue.topology import (
    RECONNECT_INTERVAL_S,
    Target,
    declare_client,
    declare_shared,
    parse_target_url,
    url_problem,
)
from targets.redact import redact

LOSS_GRACE_S = 1.0  # how long a failed publish waits to learn whether the connection is gone
BROKER_ERRORS = (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError,
                 ConnectionError)


class QueueClient:
    transport = "queue"
    variant = "aio-pika"

    def __init__(self, connection: AbstractRobustConnection, target: Target,
                 timeout: float) -> None:
        self._connection = connection
        self._ns = target.ns
        self._target = target
        # the timeouts policy: a request lives this long (expiration and deadline header),
        # and the client waits no longer for it
        self._deadline_s = target.deadline_s
        self._timeout = min(timeout, target.deadline_s) if target.deadline_s else timeout
        self.client_id = uuid.uuid4().hex[:16]
        self._ids = itertools.count(1)
        self._replies: dict[str, asyncio.Future[bytes]] = {}
        self._outcomes: dict[Any, asyncio.Future[dict[str, Any]]] = {}  # by request id
        self._closed = False
        self._ready = asyncio.Event()  # connected, channels and consumers restored
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def _open(self) -> None:
        conn = self._connection
        rpc_channel = await conn.channel(publisher_confirms=False)
        command_channel = await conn.channel(on_return_raises=True)  # confirms: the default
        consume_channel = await conn.channel(publisher_confirms=False)
        shared = await declare_shared(command_channel, self._ns, self._target.max_length)
        reply_queue, event_queue = await declare_client(consume_channel, self._ns, self.client_id)
        self._rpc_exchange = rpc_channel.default_exchange
        self._command_exchange = command_channel.default_exchange
        self._rpc_key = shared.names.rpc
        self._command_key = shared.names.commands
        self._reply_to = reply_queue.name
        await reply_queue.consume(self._on_reply, no_ack=True)
        await event_queue.consume(self._on_event, no_ack=True)
        conn.close_callbacks.add(self._on_connection_lost)
        conn.reconnect_callbacks.add(self._on_reconnected)
        self._ready.set()

    # -- the OrderClient interface -------------------------------------------------------

    async def get_order(self, order_id: int) -> Order:
        return Order.from_dict(await self._call({"op": "get", "order_id": order_id}))

    async def noop(self) -> None:
        await self._call({"op": "noop"})

    async def list_user_orders(self, user_id: int, limit: int = DEFAULT_LIST_LIMIT) -> list[Order]:
        found = await self._call({"op": "list", "user_id": user_id, "limit": limit})
        return [Order.from_dict(d) for d in found]

    async def create_order(
        self, req: CreateOrder, on_accepted: Callable[[], None] | None = None
    ) -> Order:
        self._check_connected()
        rid = req.request_id
        outcome = self._outcomes.get(rid)
        owner = outcome is None  # a concurrent create with the same request_id shares it
        if owner:
            outcome = self._outcomes[rid] = asyncio.get_running_loop().create_future()
        assert outcome is not None
        try:
            async with asyncio.timeout(self._timeout):
                event = await self._command(req, outcome, on_accepted)
        except TimeoutError:
            raise TransportError("timeout", f"no outcome within {self._timeout:g} s") from None
        finally:
            if owner and self._outcomes.get(rid) is outcome:
                del self._outcomes[rid]
        if "order" in event:
            return Order.from_dict(event["order"])
        raise codec.error_from_body(event.get("error"))

    async def _command(self, req: CreateOrder, outcome: asyncio.Future[dict[str, Any]],
                       on_accepted: Callable[[], None] | None) -> dict[str, Any]:
        """Publish until confirmed and wait for the outcome; after a lost connection, once
        it is back, publish again (same request id) and go on waiting."""
        body = codec.encode_command(req, self.client_id)
        accepted = False
        while True:
            lost = self._lost
            try:
                await self._command_exchange.publish(
                    self._message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=self._command_key,
                )
            except DeliveryError:  # a nack: the command queue is full (the shed policy)
                raise TransportError("rejected", "the broker refused the command: the queue "
                                     "is at its bound (x-max-length)") from None
            except BROKER_ERRORS as exc:
                if not await self._was_lost(lost):  # a real refusal, not a lost connection
                    raise TransportError("broker", f"broker error: {exc!r}") from None
                await self._back()
                continue
            if on_accepted is not None and not accepted:
                on_accepted()  # the broker confirmed: it now owns the command
            accepted = True
            await asyncio.wait((outcome, lost), return_when=asyncio.FIRST_COMPLETED)
            if outcome.done():
                return outcome.result()
            await self._back()

    async def _was_lost(self, lost: asyncio.Future[None]) -> bool:
        """Whether a failed publish went down with the connection: its close callback may
        run just after the publish fails, so it is given a moment."""
        if not self._closed and not lost.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(lost), LOSS_GRACE_S)
        return not self._closed and lost.done()

    async def _back(self) -> None:
        """Wait until the connection is back (the caller's timeout bounds it)."""
        await self._ready.wait()
        if self._closed:
            raise TransportError("broker", "client closed")

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._fail_all(TransportError("broker", "client closed"))
            await self._connection.close()

    # -- internals -----------------------------------------------------------------------

    async def _call(self, request: dict[str, Any]) -> Any:
        self._check_connected()
        corr = str(next(self._ids))
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._replies[corr] = fut
        try:
            async with asyncio.timeout(self._timeout):
                await self._rpc_exchange.publish(
                    self._message(codec.dumps(request), correlation_id=corr,
                                  reply_to=self._reply_to),
                    routing_key=self._rpc_key,
                    mandatory=False,
                )
                body = await fut
        except TimeoutError:
            raise TransportError("timeout", f"no reply within {self._timeout:g} s") from None
        except BROKER_ERRORS as exc:
            raise TransportError("broker", f"broker error: {exc!r}") from None
        finally:
            self._replies.pop(corr, None)
        reply = codec.loads(body)
        if "ok" in reply:
            return reply["ok"]
        raise codec.error_from_body(reply.get("error"))

    def _message(self, body: bytes, **properties: Any) -> aio_pika.Message:
        """With the timeouts policy, the request expires in the queue after the deadline
        (the broker drops it) and carries the deadline for the edge to drop it late."""
        if not self._deadline_s:
            return aio_pika.Message(body, content_type=codec.CONTENT_TYPE, **properties)
        return aio_pika.Message(
            body, content_type=codec.CONTENT_TYPE, expiration=self._deadline_s,
            headers={HEADER: header_value(time.time() + self._deadline_s)}, **properties)

    def _check_connected(self) -> None:
        # A robust connection would park the publish until it reconnects; fail fast instead.
        if self._closed or not self._ready.is_set():
            raise TransportError("broker", "not connected to the broker")

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        fut = self._replies.get(message.correlation_id or "")
        if fut is not None and not fut.done():
            fut.set_result(message.body)

    async def _on_event(self, message: AbstractIncomingMessage) -> None:
        try:
            event = codec.decode_object(message.body)
        except codec.Malformed:
            return
        rid = event.get("request_id")
        fut = None if isinstance(rid, (dict, list)) else self._outcomes.get(rid)
        if fut is not None and not fut.done():  # duplicates (redeliveries) find no waiter
            fut.set_result(event)

    def _on_connection_lost(self, *_: object) -> None:
        """Lookups in flight fail; creates in flight wait for the reconnect (_command)."""
        if self._closed or not self._ready.is_set():
            return  # closed by us, or a failed reconnect attempt: already lost
        self._ready.clear()
        lost, self._lost = self._lost, asyncio.get_running_loop().create_future()
        lost.set_result(None)
        self._fail(self._replies, TransportError("broker", "connection to the broker lost"))

    def _on_reconnected(self, *_: object) -> None:
        self._ready.set()

    def _fail_all(self, exc: OrderError) -> None:
        if not self._lost.done():
            self._lost.set_result(None)
        self._ready.set()  # creates waiting for a reconnect wake and see the client closed
        for pending in (self._replies, self._outcomes):
            self._fail(pending, exc)

    @staticmethod
    def _fail(pending: dict[Any, asyncio.Future[Any]], exc: OrderError) -> None:
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(exc)
                # Retrieved here: a request still publishing fails on its own and never
                # awaits this future; asyncio would log "exception was never retrieved".
                fut.exception()


async def connect(url: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> QueueClient:
    """`url` is the broker URL plus `?namespace=<ns>` (as the server announces it)."""
    target = parse_target_url(url)
    amqp_url, ns = target.amqp_url, target.ns
    problem = url_problem(amqp_url)
    if problem:
        raise TransportError("broker", problem)
    try:
        connection = await aio_pika.connect_robust(
            amqp_url, timeout=timeout, reconnect_interval=RECONNECT_INTERVAL_S,
            client_properties={"connection_name": f"commbench queue client {ns}"},
        )
    except Exception as exc:  # refused, auth, DNS, timeout
        reason = str(exc) or type(exc).__name__
        raise TransportError("broker", f"cannot connect to {redact(amqp_url)}: {reason}") from None
    client = QueueClient(connection, target, timeout)
    try:
        await client._open()
    except BaseException:
        await connection.close()
        raise
    return client
