"""REST target: both clients against a real uvicorn server, bad input on the wire, the
OpenAPI spec, start-up errors, and the clients' mapping of transport failures."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from targets.core.errors import InvalidRequest, NotFound, TransportError
from targets.core.model import CreateOrder, ItemRequest
from targets.core.seed import SeedSpec, seed_orders
from targets.core.service import build_service
from targets.registry import get_transport
from targets.rest.server import build_app
from targets.serving import ServeConfig
from tests.conftest import run

SEED = SeedSpec(users=5, orders_per_user=3)
CONFIG = ServeConfig(seed=SEED)
VARIANTS = ["aiohttp", "httpx"]
ERROR_KEYS = {"kind", "message", "field"}


def _create(request_id: str, user_id: int = 2, sku: str = "SKU-003", qty: int = 2) -> CreateOrder:
    return CreateOrder(request_id, user_id, (ItemRequest(sku, qty),))


async def _with_client(url: str, variant: str, body: Callable[..., Awaitable[None]],
                       timeout: float = 10.0) -> None:
    client = await get_transport("rest").client_factory(variant)(url, timeout=timeout)
    try:
        assert (client.transport, client.variant) == ("rest", variant)
        await body(client)
    finally:
        await client.close()


@pytest.mark.parametrize("variant", VARIANTS)
def test_client_get_list_create(launcher, variant):
    svc = launcher.start("rest", CONFIG)
    seeded = seed_orders(SEED)

    async def body(client):
        assert await client.get_order(1) == seeded[0]
        assert await client.get_order(SEED.total) == seeded[-1]
        listed = await client.list_user_orders(2, limit=2)
        assert [o.id for o in listed] == [6, 5]  # newest first
        assert listed == [seeded[5], seeded[4]]
        assert len(await client.list_user_orders(2)) == 3
        assert await client.list_user_orders(SEED.users + 1) == []

        accepted: list[bool] = []
        order = await client.create_order(_create("r-1"), on_accepted=lambda: accepted.append(True))
        assert accepted == [True]
        assert (order.id, order.user_id, order.status) == (SEED.total + 1, 2, "created")
        assert order.total_cents == 2 * 2599 and order.items[0].unit_price_cents == 2599
        assert await client.get_order(order.id) == order
        # A retried request id is idempotent: the first order, nothing new stored.
        assert await client.create_order(_create("r-1")) == order
        assert (await client.list_user_orders(2, limit=1))[0] == order
        assert (await client.create_order(_create("r-2"))).id == order.id + 1

    run(_with_client(svc.url, variant, body))


@pytest.mark.parametrize("variant", VARIANTS)
def test_client_domain_errors(launcher, variant):
    svc = launcher.start("rest", CONFIG)

    async def body(client):
        with pytest.raises(NotFound, match="order 999"):
            await client.get_order(999)
        cases = [
            (client.get_order(0), "order_id"),
            (client.get_order(-3), "order_id"),
            (client.list_user_orders(0), "user_id"),
            (client.list_user_orders(1, limit=0), "limit"),
            (client.list_user_orders(1, limit=1001), "limit"),
            (client.create_order(_create("", 1)), "request_id"),
            (client.create_order(_create("r-x", 0)), "user_id"),
            (client.create_order(CreateOrder("r-y", 1, ())), "items"),
            (client.create_order(_create("r-z", sku="SKU-999")), "items[0].sku"),
            (client.create_order(_create("r-w", qty=0)), "items[0].quantity"),
        ]
        for call, field in cases:
            with pytest.raises(InvalidRequest) as err:
                await call
            assert err.value.field == field
        # Rejected creates stored nothing: the next order gets the next id.
        assert (await client.create_order(_create("r-ok"))).id == SEED.total + 1

    run(_with_client(svc.url, variant, body))


def _assert_error(resp: httpx.Response, status: int, kind: str, field: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    err = resp.json()["error"]
    assert set(err) == ERROR_KEYS and err["kind"] == kind and err["message"]
    if field is not None:
        assert err["field"] == field


def test_bad_input_on_the_wire(launcher):
    svc = launcher.start("rest", CONFIG)
    json_ct = {"content-type": "application/json"}
    good = b'{"request_id": "w-1", "user_id": 1, "items": [{"sku": "SKU-001", "quantity": 1}]}'
    posts = [
        (b'{"request_id": "w-1", "user_id": 1, "items": [', "body"),  # malformed JSON
        (b"\xff\xfe\x00", "body"),  # not even UTF-8
        (b'[{"request_id": "w-1"}]', "body"),  # not an object
        (b'"an order"', "body"),
        (b"", "body"),  # no body at all
        (b'{"request_id": "w-1", "user_id": "1", "items": []}', "user_id"),
        (b'{"request_id": "w-1", "user_id": true, "items": []}', "user_id"),
        (b'{"request_id": 7, "user_id": 1, "items": []}', "request_id"),
        (b'{"request_id": "w-1", "user_id": 1, "items": {"sku": "SKU-001"}}', "items"),
        (b'{"request_id": "w-1", "user_id": 1, "items": [{"sku": "SKU-001", "quantity": 1.5}]}',
         "items[0].quantity"),
        (b'{"request_id": "w-1", "user_id": 1}', "items"),
    ]
    with httpx.Client(base_url=svc.url, timeout=10) as http:
        for raw, field in posts:
            _assert_error(http.post("/orders", content=raw, headers=json_ct), 422, "invalid", field)
        # A JSON body sent as text/plain is not taken as JSON.
        _assert_error(http.post("/orders", content=good, headers={"content-type": "text/plain"}),
                      422, "invalid", "body")
        _assert_error(http.get("/orders/abc"), 422, "invalid", "order_id")
        _assert_error(http.get("/orders/1.5"), 422, "invalid", "order_id")
        _assert_error(http.get(f"/orders/{2**63}"), 422, "invalid", "order_id")
        _assert_error(http.get("/users/x/orders"), 422, "invalid", "user_id")
        _assert_error(http.get("/users/1/orders", params={"limit": "many"}), 422, "invalid",
                      "limit")
        _assert_error(http.get("/orders/999"), 404, "not_found", "")
        _assert_error(http.get("/no/such/route"), 404, "not_found")
        _assert_error(http.delete("/orders/1"), 405, "invalid")

        # Still serving, and nothing the bad requests sent was stored.
        assert http.get("/healthz").json() == {"status": "ok"}
        created = http.post("/orders", content=good, headers=json_ct)
        assert created.status_code == 201
        assert created.json()["id"] == SEED.total + 1
        again = http.post("/orders", content=good, headers=json_ct)
        assert (again.status_code, again.json()) == (200, created.json())


def test_openapi_spec_and_docs(launcher):
    svc = launcher.start("rest", CONFIG)
    with httpx.Client(base_url=svc.url, timeout=10) as http:
        spec = http.get("/openapi.json").json()
        assert http.get("/docs").status_code == 200
    paths = spec["paths"]
    assert "get" in paths["/orders/{order_id}"]
    assert "get" in paths["/users/{user_id}/orders"]
    assert "post" in paths["/orders"]
    post = paths["/orders"]["post"]
    assert {"200", "201", "422"} <= set(post["responses"])
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/CreateOrderIn")
    error_ref = paths["/orders/{order_id}"]["get"]["responses"]["404"]["content"][
        "application/json"]["schema"]["$ref"]
    assert error_ref.endswith("/ErrorOut")


def test_sigterm_stops_cleanly(launcher):
    svc = launcher.start("rest", CONFIG)
    assert svc.stop() == 0


def test_port_in_use_is_one_line(tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "commbench"), "serve", "rest", "--port", str(port)],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )
    finally:
        holder.close()
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "in use" in lines[0] and str(port) in lines[0]
    assert "Traceback" not in proc.stderr
    assert "COMMBENCH_READY" not in proc.stdout


def test_build_app_in_process():
    service = build_service("memory", SEED)

    async def body():
        transport = httpx.ASGITransport(app=build_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            assert (await http.get("/orders/4")).json()["user_id"] == 2
            assert (await http.get("/orders/0")).status_code == 422

    run(body())


# --- transport failures, against sockets that misbehave on purpose ----------------------

@asynccontextmanager
async def _fake_server(answer: bytes | None) -> AsyncIterator[str]:
    """Reads one request head, then sends `answer` and closes (None: close, say nothing)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if answer is not None:
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


def _http(status: str, body: bytes, ctype: str = "application/json") -> bytes:
    return (f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n"
            f"connection: close\r\n\r\n").encode() + body


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("answer", "kind"), [
    (_http("503 Service Unavailable", b'{"detail": "busy"}'), "http_503"),
    (_http("404 Not Found", b"<html>nope</html>", "text/html"), "http_404"),  # not our body
    (_http("200 OK", b"not json"), "bad_response"),
    (None, "disconnected"),
])
def test_client_maps_bad_answers(variant, answer, kind):
    async def main():
        async with _fake_server(answer) as url:
            async def body(client):
                with pytest.raises(TransportError) as err:
                    await client.get_order(1)
                assert err.value.kind == kind

            await _with_client(url, variant, body)

    run(main())


@pytest.mark.parametrize("variant", VARIANTS)
def test_client_maps_refused_and_timeout(variant):
    closed = socket.socket()  # bound, not listening: connections are refused
    closed.bind(("127.0.0.1", 0))
    silent = socket.socket()  # listening, never accepting: requests are never answered
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)

    async def expect(url: str, kind: str) -> None:
        async def body(client):
            with pytest.raises(TransportError) as err:
                await client.get_order(1)
            assert err.value.kind == kind

        await _with_client(url, variant, body, timeout=0.3)

    try:
        run(expect(f"http://127.0.0.1:{closed.getsockname()[1]}", "refused"))
        run(expect(f"http://127.0.0.1:{silent.getsockname()[1]}", "timeout"))
    finally:
        closed.close()
        silent.close()
