"""A no-op HTTP endpoint faster than any Python client: Starlette answering
GET /orders/{id} with one fixed order (pre-encoded JSON), served by granian.

It speaks the REST target's wire contract, so the project's REST client drives it unchanged
and the generator's own ceiling can be measured beside wrk and locust on the same endpoint.
Run: granian --interface asgi --workers 1 bench.noop_app:app
"""

from __future__ import annotations

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ORDER = orjson.dumps({
    "id": 1, "user_id": 1,
    "items": [{"sku": "SKU-001", "quantity": 2, "unit_price_cents": 499},
              {"sku": "SKU-004", "quantity": 1, "unit_price_cents": 150}],
    "total_cents": 1148, "status": "created", "created_at_ms": 1_700_000_000_000,
})


async def get_order(request: Request) -> Response:
    return Response(ORDER, media_type="application/json")


app = Starlette(routes=[Route("/orders/{order_id}", get_order)])
