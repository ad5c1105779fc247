"""The queue target: the order service behind RabbitMQ, and in the chain topology the
payment, inventory and notification services of a choreography saga on the same broker.

Lookups are RPC (request queue → reply_to/correlation_id); creates are commands whose outcome
is published as an event on the topic exchange (targets/queue/worker.py); in a chain the
outcome waits for the saga's last event (targets/queue/saga_workers.py). Manual acks with
bounded prefetch; messages that cannot be served dead-letter into `<ns>.dead`.

Losing the broker is waited out: the robust connection reconnects every
RECONNECT_INTERVAL_S, restores channels, queues, bindings and consumers, and the broker
redelivers whatever was unacked (the idempotent handlers absorb it). The server logs
`broker lost: <reason>` and `broker back`; a broker still away after BROKER_GONE_S, or a
consumer the broker cancels (its queue was deleted), ends the server with code 2 (a
ServeError), and the harness marks the target failed rather than report figures measured
against no broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from functools import partial

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue, AbstractRobustConnection

from targets.control import GAUGES, FaultSwitch, controlled
from targets.core.service import OrderService
from targets.flow.inventory import Inventory
from targets.flow.notification import Notifications
from targets.flow.payment import Payments
from targets.flow.saga import inventory_reacts, notification_reacts, payment_reacts
from targets.policy.config import Policies
from targets.queue.saga_workers import ChainWorker, React, SagaWorker
from targets.queue.topology import (
    PREFETCH,
    RECONNECT_INTERVAL_S,
    declare_saga,
    declare_shared,
    target_url,
    url_problem,
)
from targets.queue.worker import BROKER_ERRORS, Guarded, Worker
from targets.redact import redact
from targets.registry import get_transport
from targets.serving import (
    ROLE_INVENTORY,
    ROLE_ORDER,
    ROLE_PAYMENT,
    TOPOLOGY_CHAIN,
    ServeConfig,
    ServeError,
    announce_ready,
    check_role,
    run_on_uvloop,
    run_service,
)

CONNECT_TIMEOUT_S = 5.0
DRAIN_TIMEOUT_S = 10.0  # how long a stop waits for in-flight messages
BROKER_GONE_S = 20.0  # a lost broker not back within this ends the server (harness/scenario/faults.py)

log = logging.getLogger("commbench.queue")

# What a role consumes: its worker (drained on stop) and (queue, callback) pairs.
Ready = tuple[Guarded, list[tuple[AbstractQueue, Callable[..., Awaitable[None]]]]]
Setup = Callable[[AbstractChannel, AbstractChannel], Awaitable[Ready]]


async def _connect(amqp_url: str, ns: str) -> AbstractRobustConnection:
    problem = url_problem(amqp_url)
    if problem:
        raise ServeError(problem)
    try:
        return await aio_pika.connect_robust(
            amqp_url, timeout=CONNECT_TIMEOUT_S, reconnect_interval=RECONNECT_INTERVAL_S,
            client_properties={"connection_name": f"commbench queue server {ns}"},
        )
    except Exception as exc:  # refused, DNS, auth, timeout: all one line for the user
        reason = str(exc) or type(exc).__name__
        raise ServeError(
            f"cannot connect to the RabbitMQ broker at {redact(amqp_url)}: {reason}"
        ) from None


async def _serve(config: ServeConfig, setup: Setup, faults: FaultSwitch) -> None:
    async with controlled(config.control, faults):  # up before the ready line
        await _serve_broker(config, setup)


def _policies(config: ServeConfig) -> Policies:
    """The queue's part of the scenario's policies: `timeout` (a command's or lookup's
    deadline: the client sets it, the edge drops what arrives past it), `shed` (the request
    and command queues' bound) and `bulkhead` (a downstream service's prefetch: messages it
    holds at once). The hops' own policies (retries, breaker) have no queue counterpart."""
    try:
        return Policies.from_json(config.policies)
    except ValueError as exc:
        raise ServeError(str(exc)) from None


async def _serve_broker(config: ServeConfig, setup: Setup) -> None:
    policies = _policies(config)
    connection = await _connect(config.amqp_url, config.namespace)
    try:
        consuming = await connection.channel(publisher_confirms=False)
        bulkhead = policies.bulkhead if config.role != ROLE_ORDER else None
        await consuming.set_qos(prefetch_count=bulkhead or PREFETCH)
        confirming = await connection.channel()  # publisher confirms: aio-pika's default
        worker, consumers = await setup(consuming, confirming)
        tags = [(queue, await queue.consume(_counted(queue.name, callback)))
                for queue, callback in consumers]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[str] = loop.create_future()  # why the server gives up
        away: asyncio.TimerHandle | None = None  # the deadline while the broker is away

        def give_up(why: str) -> None:
            if not stop.is_set() and not lost.done():
                lost.set_result(why)

        def on_lost(_sender: object, why: object = None) -> None:
            nonlocal away
            if stop.is_set() or away is not None:
                return
            reason = (str(why) or type(why).__name__) if why is not None else "closed by the broker"
            log.warning("broker lost: %s; reconnecting (giving up after %g s)", reason,
                        BROKER_GONE_S)
            away = loop.call_later(BROKER_GONE_S, give_up,
                                   f"{reason} (not back within {BROKER_GONE_S:g} s)")

        def on_cancel(frame: object) -> None:
            give_up(f"consumer {getattr(frame, 'consumer_tag', '?')} cancelled by the broker "
                    "(its queue was deleted)")

        async def watch_cancels() -> None:  # on each connection's own channels
            for channel in (consuming, confirming):
                (await channel.get_underlay_channel()).on_consumer_cancel_callbacks.add(on_cancel)

        def on_back(_sender: object) -> None:
            nonlocal away
            if away is not None:
                away.cancel()
                away = None
                log.info("broker back: consuming again")
            rewatch = loop.create_task(watch_cancels())
            rewatch.add_done_callback(lambda t: t.cancelled() or t.exception())

        connection.close_callbacks.add(on_lost)
        connection.reconnect_callbacks.add(on_back)
        await watch_cancels()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        announce_ready("queue", target_url(config.amqp_url, config.namespace, policies.timeout_s,
                                           policies.shed), config.role)
        log.info("serving namespace %s on %s as %s (%s)", config.namespace,
                 redact(config.amqp_url), config.role, config.topology)
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


def _counted(queue: str, callback: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """The callback, keeping GAUGES["unacked:<queue>"]: messages delivered to this process
    and not yet settled (the handler acks, rejects or hands back before it returns), which
    the broker's passive declare does not tell (it counts only the ready ones)."""
    key = f"unacked:{queue}"
    GAUGES[key] = 0

    async def on_message(message: object) -> None:
        GAUGES[key] += 1
        try:
            await callback(message)
        finally:
            GAUGES[key] -= 1

    return on_message


def _order_setup(config: ServeConfig, service: OrderService, faults: FaultSwitch) -> Setup:
    """The order service: lookups and commands; in a chain also the saga's last events."""

    async def setup(consuming: AbstractChannel, confirming: AbstractChannel) -> Ready:
        if config.topology != TOPOLOGY_CHAIN:
            shared = await declare_shared(consuming, config.namespace, _policies(config).shed)
            events = await confirming.get_exchange(shared.names.events)
            worker = Worker(service, consuming.default_exchange, events, faults)
            return worker, [(shared.rpc, worker.on_rpc), (shared.commands, worker.on_command)]
        saga = await declare_saga(consuming, config.namespace, _policies(config).shed)
        shared = saga.shared
        chain = ChainWorker(service, consuming.default_exchange,
                            await confirming.get_exchange(shared.names.events),
                            await confirming.get_exchange(shared.names.saga), faults)
        return chain, [(shared.rpc, chain.on_rpc), (shared.commands, chain.on_command),
                       (saga.queues[ROLE_ORDER], chain.on_saga)]

    return setup


def _saga_setup(config: ServeConfig, react: React, faults: FaultSwitch) -> Setup:
    """A downstream service: its saga queue, and the saga exchange to publish on."""

    async def setup(consuming: AbstractChannel, confirming: AbstractChannel) -> Ready:
        saga = await declare_saga(consuming, config.namespace, _policies(config).shed)
        worker = SagaWorker(react, await confirming.get_exchange(saga.shared.names.saga), faults)
        return worker, [(saga.queues[config.role], worker.on_saga)]

    return setup


def _serve_downstream(config: ServeConfig) -> None:
    """Open the role's own store, serve its saga queue, close the store on every path."""
    core: Payments | Inventory | Notifications
    if config.role == ROLE_PAYMENT:
        core = payments = Payments.open(config.store, config.seed)
        react: React = partial(payment_reacts, payments)
    elif config.role == ROLE_INVENTORY:
        core = inventory = Inventory.open(config.store, config.seed)
        react = partial(inventory_reacts, inventory)
    else:
        core = notifications = Notifications.open(config.store)
        react = partial(notification_reacts, notifications)
    try:
        faults = FaultSwitch()
        run_on_uvloop(_serve(config, _saga_setup(config, react, faults), faults))
    finally:
        core.close()


def serve(config: ServeConfig) -> None:
    """Run `config.role` until SIGTERM/SIGINT; raise ServeError when the broker does not
    answer. Roles meet on the broker under the namespace: no downstream URLs are needed."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    check_role(config, "queue", get_transport("queue").roles)
    if config.role == ROLE_ORDER:
        faults = FaultSwitch()
        run_service(config, lambda service: _serve(config, _order_setup(config, service, faults),
                                                   faults))
    else:
        _serve_downstream(config)
