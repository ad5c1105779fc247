"""The order flow's message handlers on the broker (topology chain): the edge's, which turns
a create command into OrderCreated and the saga's last event into the create's completion,
and the downstream services', which apply a reaction from targets.flow.saga and publish the
event it names. Each acks only after its side effect and after the broker confirmed what it
published, so a crash anywhere leads to a redelivery, which the idempotent reactions absorb.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from targets.control import FaultSwitch
from targets.core.errors import OrderError
from targets.core.model import STATUS_PENDING, CreateOrder, Order
from targets.core.service import OrderService
from targets.flow.orders import answer
from targets.flow.saga import ORDER_CREATED, UnexpectedEvent, order_reacts
from targets.queue import codec
from targets.queue.worker import Guarded, Worker, persistent

log = logging.getLogger("commbench.queue")

React = Callable[[str, Order], str | None]  # a service's reaction: the event to publish, if any


async def publish_saga(saga: AbstractExchange, event: str, order: Order, request_id: Any,
                       client_id: str) -> None:
    """Persistent, on a channel with publisher confirms: returns once the broker has it."""
    await saga.publish(persistent(codec.encode_saga(event, order, request_id, client_id)),
                       routing_key=event, mandatory=False)


async def _reject(message: AbstractIncomingMessage, why: Exception) -> None:
    log.warning("dead-lettering a saga message: %s", why)
    await message.reject(requeue=False)


class ChainWorker(Worker):
    """The edge of the saga: lookups as in the single topology; a create stores the order
    pending and publishes OrderCreated; its completion waits for the saga's last event."""

    def __init__(self, service: OrderService, replies: AbstractExchange, events: AbstractExchange,
                 saga: AbstractExchange, faults: FaultSwitch | None = None) -> None:
        super().__init__(service, replies, events, faults)
        self.saga = saga  # on the confirming channel, like `events`

    async def on_saga(self, message: AbstractIncomingMessage) -> None:
        await self._guard(self._saga_event, message)

    async def _create(self, req: CreateOrder, request_id: Any, client_id: str) -> None:
        order, _ = await self.service.create_order(req, status=STATUS_PENDING)
        if order.status == STATUS_PENDING:
            # New, or a retry while its saga runs (or was lost): publishing again is safe,
            # every step being idempotent, and completes the create for this client too.
            await publish_saga(self.saga, ORDER_CREATED, order, request_id, client_id)
        else:
            await self.complete(request_id, client_id, answer(order))

    async def _saga_event(self, message: AbstractIncomingMessage) -> None:
        if self.faults.active and await self._requeued(message):
            return
        try:
            m = codec.decode_saga(message.body)
            order = await order_reacts(self.service, m.event, m.order.id)
        except (codec.Malformed, UnexpectedEvent, OrderError) as exc:
            await _reject(message, exc)
            return
        await self.complete(m.request_id, m.client_id, order)
        await message.ack()


class SagaWorker(Guarded):
    """A downstream service (payment, inventory, notification) on its saga queue."""

    def __init__(self, react: React, saga: AbstractExchange,
                 faults: FaultSwitch | None = None) -> None:
        super().__init__(faults)
        self.react = react
        self.saga = saga

    async def on_saga(self, message: AbstractIncomingMessage) -> None:
        await self._guard(self._handle, message)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        if self.faults.active and await self._requeued(message):
            return
        try:
            m = codec.decode_saga(message.body)
            reply = self.react(m.event, m.order)
        except (codec.Malformed, UnexpectedEvent, OrderError) as exc:
            await _reject(message, exc)
            return
        if self.faults.active:
            self.faults.after_effect()  # a crash here: written, not acked, redelivered
        if reply is not None:
            await publish_saga(self.saga, reply, m.order, m.request_id, m.client_id)
        await message.ack()
