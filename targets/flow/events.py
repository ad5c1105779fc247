"""The saga's events and who consumes which: all that the broker's topology and the message
codec need to know of the order flow (targets/flow/saga.py holds the reactions)."""

from __future__ import annotations

from targets.serving import ROLE_INVENTORY, ROLE_NOTIFICATION, ROLE_ORDER, ROLE_PAYMENT

ORDER_CREATED = "OrderCreated"
PAYMENT_PROCESSED = "PaymentProcessed"
PAYMENT_FAILED = "PaymentFailed"
STOCK_RESERVED = "StockReserved"
STOCK_FAILED = "StockFailed"
PAYMENT_REFUNDED = "PaymentRefunded"
EVENTS = (ORDER_CREATED, PAYMENT_PROCESSED, PAYMENT_FAILED, STOCK_RESERVED, STOCK_FAILED,
          PAYMENT_REFUNDED)

# Which events each service consumes (its queue's bindings).
SUBSCRIPTIONS: dict[str, tuple[str, ...]] = {
    ROLE_ORDER: (PAYMENT_FAILED, STOCK_RESERVED, PAYMENT_REFUNDED),
    ROLE_PAYMENT: (ORDER_CREATED, STOCK_FAILED),
    ROLE_INVENTORY: (PAYMENT_PROCESSED,),
    ROLE_NOTIFICATION: (ORDER_CREATED,),
}
