"""The edge's rules for an order in the flow, shared by the synchronous chain and the saga:
an order is stored `pending`, its first terminal status wins, and a rejected order is
answered with Unavailable (on the first call and on every retry of its request id)."""

from __future__ import annotations

from targets.core.errors import Unavailable
from targets.core.model import STATUS_PENDING, STATUS_REJECTED, Order
from targets.core.service import OrderService


async def settle(orders: OrderService, order_id: int, status: str) -> Order:
    """Move a pending order to `status`; an order already settled keeps its status (a late or
    duplicate event cannot overturn an outcome). The flow's stores are SQLite, whose calls
    never suspend, so within one event loop the read and the write are atomic."""
    order = await orders.get_order(order_id)
    if order.status != STATUS_PENDING:
        return order
    return await orders.set_status(order_id, status)


def answer(order: Order) -> Order:
    """The order a create returns, or Unavailable when a downstream failed it."""
    if order.status == STATUS_REJECTED:
        raise Unavailable(f"order {order.id} was rejected: a downstream service did not answer")
    return order
