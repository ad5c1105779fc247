"""Protobuf ⇄ domain conversions, in one place so server and client cannot drift apart."""

from __future__ import annotations

from targets.core.model import CreateOrder, Item, ItemRequest, Order
from targets.grpc import orders_pb2 as pb


def order_to_pb(order: Order) -> pb.Order:
    return pb.Order(
        id=order.id,
        user_id=order.user_id,
        items=[
            pb.Item(sku=i.sku, quantity=i.quantity, unit_price_cents=i.unit_price_cents)
            for i in order.items
        ],
        total_cents=order.total_cents,
        status=order.status,
        created_at_ms=order.created_at_ms,
    )


def order_from_pb(msg: pb.Order) -> Order:
    return Order(
        id=msg.id,
        user_id=msg.user_id,
        items=tuple(Item(i.sku, i.quantity, i.unit_price_cents) for i in msg.items),
        total_cents=msg.total_cents,
        status=msg.status,
        created_at_ms=msg.created_at_ms,
    )


def create_to_pb(req: CreateOrder) -> pb.CreateOrderRequest:
    """Raises TypeError/ValueError when a field cannot be encoded (e.g. beyond int64)."""
    return pb.CreateOrderRequest(
        request_id=req.request_id,
        user_id=req.user_id,
        items=[pb.ItemRequest(sku=i.sku, quantity=i.quantity) for i in req.items],
    )


def create_from_pb(msg: pb.CreateOrderRequest) -> CreateOrder:
    return CreateOrder(
        request_id=msg.request_id,
        user_id=msg.user_id,
        items=tuple(ItemRequest(i.sku, i.quantity) for i in msg.items),
    )


def update_to_pb(order: Order) -> pb.OrderUpdate:
    return pb.OrderUpdate(order_id=order.id, status=order.status, order=order_to_pb(order))
