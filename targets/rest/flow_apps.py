"""The flow's payment and inventory services as FastAPI apps. Routes only translate HTTP ⇄
the cores in targets.flow; every rule (idempotency, declines, all-or-nothing stock) is there.
Each route first awaits the fault switch when a fault is on (targets/control.py), then drops
the work when the caller's deadline (`x-commbench-deadline`, targets/policy/deadline.py) has
passed: 504, counted as `deadline_expired`."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Header
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from targets.control import FaultSwitch
from targets.flow.inventory import Inventory
from targets.flow.payment import Payments
from targets.policy.deadline import check_header
from targets.rest import flow_wire, wire
from targets.rest.responses import ERRORS, EXCEPTION_HANDLERS, OrjsonResponse


class ChargeIn(BaseModel):
    model_config = ConfigDict(strict=True)
    user_id: int
    amount_cents: int


class LineIn(BaseModel):
    model_config = ConfigDict(strict=True)
    sku: str
    quantity: int


class ReserveIn(BaseModel):
    model_config = ConfigDict(strict=True)
    items: list[LineIn]


# The caller's deadline; not in the schema: the harness's own header, not the API's.
Deadline = Annotated[str | None, Header(alias="x-commbench-deadline", include_in_schema=False)]


class StateOut(BaseModel):
    order_id: int
    state: str


def _app(title: str) -> FastAPI:
    app = FastAPI(title=title, version="1", default_response_class=OrjsonResponse,
                  exception_handlers=EXCEPTION_HANDLERS)

    @app.get(wire.HEALTH_PATH)
    async def healthz() -> Response:
        return OrjsonResponse({"status": "ok"})

    return app


def _state(order_id: int, state: str) -> Response:
    return OrjsonResponse(flow_wire.state_body(order_id, state))


def build_payment_app(payments: Payments, faults: FaultSwitch | None = None) -> FastAPI:
    app = _app("commbench payment")
    faults = faults or FaultSwitch()

    @app.post(flow_wire.CHARGE_PATH, response_model=StateOut, responses=ERRORS)
    async def charge(order_id: int, body: ChargeIn, deadline: Deadline = None) -> Response:
        if faults.active:
            await faults.before()
        check_header(deadline)
        state = payments.charge(order_id, body.user_id, body.amount_cents)
        if faults.active:
            faults.after_effect()  # a crash here: charged, never answered
        return _state(order_id, state)

    @app.post(flow_wire.REFUND_PATH, response_model=StateOut, responses=ERRORS)
    async def refund(order_id: int, deadline: Deadline = None) -> Response:
        if faults.active:
            await faults.before()
        check_header(deadline)
        return _state(order_id, payments.refund(order_id))

    return app


def build_inventory_app(inventory: Inventory, faults: FaultSwitch | None = None) -> FastAPI:
    app = _app("commbench inventory")
    faults = faults or FaultSwitch()

    @app.post(flow_wire.RESERVE_PATH, response_model=StateOut, responses=ERRORS)
    async def reserve(order_id: int, body: ReserveIn, deadline: Deadline = None) -> Response:
        if faults.active:
            await faults.before()
        check_header(deadline)
        return _state(order_id, inventory.reserve(order_id, ((i.sku, i.quantity) for i in body.items)))

    @app.post(flow_wire.RELEASE_PATH, response_model=StateOut, responses=ERRORS)
    async def release(order_id: int, deadline: Deadline = None) -> Response:
        if faults.active:
            await faults.before()
        check_header(deadline)
        return _state(order_id, inventory.release(order_id))

    return app
