"""The flow's payment and inventory services on grpc.aio. Handlers only translate protobuf ⇄
the cores in targets.flow; every rule lives there. Each method first awaits the fault switch
when a fault is on (targets/control.py): an injected error aborts INTERNAL, like any error
the status table does not name. Then work whose caller's deadline has passed is dropped
(DEADLINE_EXCEEDED, counted as `deadline_expired`, targets/policy/deadline.py)."""

from __future__ import annotations

import grpc

from targets.control import FaultSwitch
from targets.core.errors import OrderError
from targets.flow.inventory import Inventory
from targets.flow.payment import Payments
from targets.grpc import flow_pb2 as fpb
from targets.grpc import flow_pb2_grpc as fpb_grpc
from targets.grpc.status import abort
from targets.policy.deadline import check_remaining

PAYMENT_SERVICE: str = fpb.DESCRIPTOR.services_by_name["PaymentService"].full_name
INVENTORY_SERVICE: str = fpb.DESCRIPTOR.services_by_name["InventoryService"].full_name


class PaymentServicer(fpb_grpc.PaymentServiceServicer):
    def __init__(self, payments: Payments, faults: FaultSwitch | None = None) -> None:
        self.payments = payments
        self.faults = faults or FaultSwitch()

    async def Charge(self, request: fpb.ChargeRequest, context: grpc.aio.ServicerContext) -> fpb.FlowReply:
        try:
            if self.faults.active:
                await self.faults.before()
            check_remaining(context.time_remaining())
            state = self.payments.charge(request.order_id, request.user_id, request.amount_cents)
            if self.faults.active:
                self.faults.after_effect()  # a crash here: charged, never answered
        except OrderError as exc:
            await abort(context, exc)
        return fpb.FlowReply(order_id=request.order_id, state=state)

    async def Refund(self, request: fpb.OrderRef, context: grpc.aio.ServicerContext) -> fpb.FlowReply:
        try:
            if self.faults.active:
                await self.faults.before()
            check_remaining(context.time_remaining())
            state = self.payments.refund(request.order_id)
        except OrderError as exc:
            await abort(context, exc)
        return fpb.FlowReply(order_id=request.order_id, state=state)


class InventoryServicer(fpb_grpc.InventoryServiceServicer):
    def __init__(self, inventory: Inventory, faults: FaultSwitch | None = None) -> None:
        self.inventory = inventory
        self.faults = faults or FaultSwitch()

    async def Reserve(self, request: fpb.ReserveRequest, context: grpc.aio.ServicerContext) -> fpb.FlowReply:
        try:
            if self.faults.active:
                await self.faults.before()
            check_remaining(context.time_remaining())
            state = self.inventory.reserve(request.order_id, ((i.sku, i.quantity) for i in request.items))
        except OrderError as exc:
            await abort(context, exc)
        return fpb.FlowReply(order_id=request.order_id, state=state)

    async def Release(self, request: fpb.OrderRef, context: grpc.aio.ServicerContext) -> fpb.FlowReply:
        try:
            if self.faults.active:
                await self.faults.before()
            check_remaining(context.time_remaining())
            state = self.inventory.release(request.order_id)
        except OrderError as exc:
            await abort(context, exc)
        return fpb.FlowReply(order_id=request.order_id, state=state)
