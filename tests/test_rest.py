"""REST target: both clients against a real uvicorn server, bad input on the wire, the
OpenAPI contract, start-up errors, and the clients' mapping of transport failures."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from targets.core.errors import InvalidRequest, NotFound, TransportError
from targets.core.model import CATALOGUE, CreateOrder, ItemRequest
from targets.core.seed import SeedSpec, seed_orders
from targets.core.service import build_service
from targets.core.validation import ID_MAX, MAX_ITEMS, MAX_LIST_LIMIT, MAX_QUANTITY, MAX_REQUEST_ID
from targets.registry import get_transport
from targets.rest.server import build_app
from targets.serving import ServeConfig
from tests.conftest import run

SEED = SeedSpec(users=5, orders_per_user=3)
CONFIG = ServeConfig(seed=SEED)
VARIANTS = ["aiohttp", "httpx", "probe"]
ERROR_KEYS = {"kind", "message", "field"}
SPEC_URI = "urn:commbench:openapi"
SKUS = sorted(CATALOGUE)


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


# --- the OpenAPI contract: the served document against the server's real answers ---------

def _schema_at(spec: dict[str, Any], *where: str | int) -> Draft202012Validator:
    """A JSON Schema 2020-12 validator (OpenAPI 3.1's dialect) for the schema at `where` in the
    served document, its `#/components/...` references resolved in that document."""
    registry = Registry().with_resource(SPEC_URI, Resource(spec, specification=DRAFT202012))
    pointer = "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in where)
    return Draft202012Validator({"$ref": f"{SPEC_URI}#{pointer}"}, registry=registry)


def _declared(spec: dict[str, Any], method: str, template: str, resp: httpx.Response) -> None:
    """`resp` has a status the operation declares, and a body its JSON schema accepts."""
    responses = spec["paths"][template][method]["responses"]
    status = str(resp.status_code)
    assert status in responses, (
        f"{method.upper()} {template} answered {status}, declared {sorted(responses)}")
    assert resp.headers["content-type"] == "application/json"
    validator = _schema_at(spec, "paths", template, method, "responses", status, "content",
                           "application/json", "schema")
    errors = [e.message for e in validator.iter_errors(resp.json())]
    assert not errors, f"{method.upper()} {template} {status}: {errors}: {resp.text}"


def _params_valid(spec: dict[str, Any], template: str, values: dict[str, int]) -> bool:
    """Whether the declared parameter schemas of GET `template` accept `values`."""
    params = spec["paths"][template]["get"]["parameters"]
    index = {p["name"]: n for n, p in enumerate(params)}
    return all(_schema_at(spec, "paths", template, "get", "parameters", index[name], "schema")
               .is_valid(v) for name, v in values.items())


def _body_valid(spec: dict[str, Any], body: object) -> bool:
    return _schema_at(spec, "paths", "/orders", "post", "requestBody", "content",
                      "application/json", "schema").is_valid(body)


def _body(request_id: str = "c-1", user_id: object = 1, items: object = None) -> dict[str, Any]:
    return {"request_id": request_id, "user_id": user_id,
            "items": [{"sku": "SKU-001", "quantity": 1}] if items is None else items}


def test_openapi_document_matches_the_server(launcher):
    """The served /openapi.json is a valid OpenAPI 3.1 document that declares exactly what the
    server does: each route's statuses, every answer's JSON shape, and the input ranges the
    core enforces (schema-valid input is never a 422, schema-invalid input always is)."""
    svc = launcher.start("rest", CONFIG)
    with httpx.Client(base_url=svc.url, timeout=10) as http:
        spec = http.get("/openapi.json").json()
        assert http.get("/docs").status_code == 200

        validate_openapi(spec, cls=OpenAPIV31SpecValidator)
        operations = {(m, t): set(op["responses"]) for t, item in spec["paths"].items()
                      for m, op in item.items()}
        assert operations == {
            ("get", "/healthz"): {"200"},
            ("get", "/orders/{order_id}"): {"200", "404", "422"},
            ("get", "/users/{user_id}/orders"): {"200", "422"},
            ("post", "/orders"): {"200", "201", "422", "503"},  # 503: a chain edge rejected it
            ("post", "/noop"): {"204"},
        }
        assert http.post("/noop").status_code == 204 and http.post("/noop").content == b""

        _declared(spec, "get", "/healthz", http.get("/healthz"))

        # Path and query parameters at and beyond each bound of the core's rules.
        gets = [
            ("/orders/{order_id}", {"order_id": 1}, 200),
            ("/orders/{order_id}", {"order_id": SEED.total + 1}, 404),
            ("/orders/{order_id}", {"order_id": ID_MAX}, 404),
            ("/orders/{order_id}", {"order_id": 0}, 422),
            ("/orders/{order_id}", {"order_id": -1}, 422),
            ("/orders/{order_id}", {"order_id": ID_MAX + 1}, 422),
            ("/users/{user_id}/orders", {"user_id": 2}, 200),
            ("/users/{user_id}/orders", {"user_id": 2, "limit": 1}, 200),
            ("/users/{user_id}/orders", {"user_id": 2, "limit": MAX_LIST_LIMIT}, 200),
            ("/users/{user_id}/orders", {"user_id": SEED.users + 1}, 200),  # none: []
            ("/users/{user_id}/orders", {"user_id": 0}, 422),
            ("/users/{user_id}/orders", {"user_id": 2, "limit": 0}, 422),
            ("/users/{user_id}/orders", {"user_id": 2, "limit": MAX_LIST_LIMIT + 1}, 422),
        ]
        for template, values, status in gets:
            path_values = {k: v for k, v in values.items() if k != "limit"}
            query = {"limit": values["limit"]} if "limit" in values else None
            resp = http.get(template.format(**path_values), params=query)
            assert resp.status_code == status, (template, values, resp.text)
            _declared(spec, "get", template, resp)
            assert _params_valid(spec, template, values) == (status != 422), (template, values)
        listed = http.get("/users/2/orders").json()["orders"]
        assert len(listed) == SEED.orders_per_user  # the list schema was checked on real orders

        # Create bodies at and beyond each bound; a valid one is created (201), then retried (200).
        many = [{"sku": SKUS[n % len(SKUS)], "quantity": MAX_QUANTITY} for n in range(MAX_ITEMS)]
        posts: list[tuple[object, int]] = [
            (_body("c-1"), 201),
            (_body("c-1"), 200),
            (_body("x" * MAX_REQUEST_ID, items=many), 201),
            (_body(SKUS[-1]), 201),
            (_body(""), 422),
            (_body("x" * (MAX_REQUEST_ID + 1)), 422),
            (_body(user_id=0), 422),
            (_body(user_id=ID_MAX + 1), 422),
            (_body(user_id="1"), 422),
            (_body(items=[]), 422),
            (_body(items=[*many, many[0]]), 422),
            (_body(items=[{"sku": "SKU-999", "quantity": 1}]), 422),
            (_body(items=[{"sku": "SKU-001", "quantity": 0}]), 422),
            (_body(items=[{"sku": "SKU-001", "quantity": MAX_QUANTITY + 1}]), 422),
            (_body(items=[{"sku": "SKU-001"}]), 422),
            ({"user_id": 1, "items": []}, 422),
            (["not", "an", "object"], 422),
        ]
        for body, status in posts:
            resp = http.post("/orders", json=body)
            assert resp.status_code == status, (body, resp.text)
            _declared(spec, "post", "/orders", resp)
            assert _body_valid(spec, body) == (status != 422), body
        resp = http.post("/orders", content=b'{"request_id": "c-9", "items": [',
                         headers={"content-type": "application/json"})
        _declared(spec, "post", "/orders", resp)
        assert resp.status_code == 422


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
    async def body():
        service = await build_service("memory", SEED)
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
