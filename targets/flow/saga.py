"""The choreography saga (queue topology): how each service reacts to the events of
targets/flow/events.py. Pure rules over the services' cores; the queue adapter only moves
messages.

    OrderCreated     → payment charges      → PaymentProcessed | PaymentFailed
    OrderCreated     → notification records
    PaymentProcessed → inventory reserves   → StockReserved | StockFailed
    StockReserved    → edge: confirmed
    PaymentFailed    → edge: cancelled
    StockFailed      → payment refunds      → PaymentRefunded
    PaymentRefunded  → edge: cancelled

Every reaction is idempotent, so at-least-once delivery is safe: a redelivered event
re-answers with the event its first delivery produced (in case that one was never
published) and changes nothing.
"""

from __future__ import annotations

from targets.core.model import STATUS_CANCELLED, STATUS_CONFIRMED, Order
from targets.core.service import OrderService
from targets.flow import inventory as inv
from targets.flow import payment as pay
from targets.flow.events import (
    ORDER_CREATED,
    PAYMENT_FAILED,
    PAYMENT_PROCESSED,
    PAYMENT_REFUNDED,
    STOCK_FAILED,
    STOCK_RESERVED,
)
from targets.flow.inventory import Inventory
from targets.flow.notification import Notifications
from targets.flow.orders import settle
from targets.flow.payment import Payments


class UnexpectedEvent(ValueError):
    """An event a service does not consume: a wiring bug, dead-lettered."""


def payment_reacts(payments: Payments, event: str, order: Order) -> str | None:
    """Charge on OrderCreated, refund on StockFailed; the event to publish, if any."""
    if event == ORDER_CREATED:
        state = payments.charge(order.id, order.user_id, order.total_cents)
        if state == pay.CHARGED:
            return PAYMENT_PROCESSED
        if state in (pay.DECLINED, pay.VOIDED):
            return PAYMENT_FAILED
        return None  # refunded: the saga already went past this step and back
    if event == STOCK_FAILED:
        payments.refund(order.id)
        return PAYMENT_REFUNDED  # also when already refunded: its first answer may be lost
    raise UnexpectedEvent(f"payment does not consume {event!r}")


def inventory_reacts(inventory: Inventory, event: str, order: Order) -> str | None:
    """Reserve on PaymentProcessed; the event to publish, if any."""
    if event != PAYMENT_PROCESSED:
        raise UnexpectedEvent(f"inventory does not consume {event!r}")
    state = inventory.reserve(order.id, ((i.sku, i.quantity) for i in order.items))
    if state == inv.RESERVED:
        return STOCK_RESERVED
    if state in (inv.OUT_OF_STOCK, inv.VOIDED):
        return STOCK_FAILED
    return None  # released: nothing in this saga releases, so nothing to answer


async def order_reacts(orders: OrderService, event: str, order_id: int) -> Order:
    """Settle the order on the saga's last event; the order as it now stands (terminal)."""
    if event == STOCK_RESERVED:
        return await settle(orders, order_id, STATUS_CONFIRMED)
    if event in (PAYMENT_FAILED, PAYMENT_REFUNDED):
        return await settle(orders, order_id, STATUS_CANCELLED)
    raise UnexpectedEvent(f"the order service does not consume {event!r}")


def notification_reacts(notifications: Notifications, event: str, order: Order) -> None:
    if event != ORDER_CREATED:
        raise UnexpectedEvent(f"notification does not consume {event!r}")
    notifications.record(order)
