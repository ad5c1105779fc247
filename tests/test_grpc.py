"""gRPC transport: real servers over real sockets (launched, or in-process where the test
needs to reach the core directly), the grpc.aio client, and the committed generated code."""

from __future__ import annotations

import filecmp
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from targets.core.errors import InvalidRequest, NotFound, TransportError
from targets.core.model import TERMINAL_STATUSES, CreateOrder, ItemRequest
from targets.core.seed import SeedSpec, seed_orders
from targets.core.service import build_service
from targets.grpc import client as grpc_client
from targets.grpc import orders_pb2 as pb
from targets.grpc import orders_pb2_grpc as pb_grpc
from targets.grpc.server import SERVICE_NAME, OrderServicer, add_to_server
from targets.serving import ServeConfig
from tests.conftest import run

SEED = SeedSpec(users=5, orders_per_user=3)
SEEDED = {o.id: o for o in seed_orders(SEED)}
GRPC_DIR = Path(grpc_client.__file__).parent


@pytest.fixture
def url(launcher) -> str:
    return launcher.start("grpc", ServeConfig(seed=SEED)).url


def _create(request_id: str, user_id: int = 2) -> CreateOrder:
    return CreateOrder(request_id, user_id, (ItemRequest("SKU-001", 2), ItemRequest("SKU-003", 1)))


def test_url_is_grpc_scheme(url: str) -> None:
    assert url.startswith("grpc://127.0.0.1:")
    assert grpc_client.parse_target(url) == url.removeprefix("grpc://")
    assert grpc_client.parse_target("localhost:50051") == "localhost:50051"
    with pytest.raises(ValueError):
        grpc_client.parse_target("grpc://no-port")


def test_get_list_create(url: str) -> None:
    async def main() -> None:
        c = await grpc_client.connect(url)
        try:
            assert (c.transport, c.variant) == ("grpc", "grpcio")
            assert await c.get_order(7) == SEEDED[7]
            assert [o.id for o in await c.list_user_orders(2)] == [6, 5, 4]
            assert await c.list_user_orders(2, limit=2) == [SEEDED[6], SEEDED[5]]
            assert await c.list_user_orders(999) == []

            accepted: list[bool] = []
            order = await c.create_order(_create("req-1"), on_accepted=lambda: accepted.append(True))
            assert accepted == [True]
            assert order.id == 16 and order.user_id == 2 and order.status == "created"
            assert order.total_cents == 2 * 499 + 2599
            assert [(i.sku, i.quantity, i.unit_price_cents) for i in order.items] == [
                ("SKU-001", 2, 499), ("SKU-003", 1, 2599)]
            assert await c.get_order(16) == order
            assert (await c.list_user_orders(2))[0] == order
        finally:
            await c.close()

    run(main())


def test_create_is_idempotent(url: str) -> None:
    async def main() -> None:
        c = await grpc_client.connect(url)
        try:
            first = await c.create_order(_create("same"))
            again = await c.create_order(_create("same"))
            assert again == first
            assert [o.id for o in await c.list_user_orders(2)].count(first.id) == 1
        finally:
            await c.close()
        # The wire form says whether this call created the order.
        async with grpc.aio.insecure_channel(grpc_client.parse_target(url)) as ch:
            stub = pb_grpc.OrderServiceStub(ch)
            req = pb.CreateOrderRequest(request_id="same", user_id=2,
                                        items=[pb.ItemRequest(sku="SKU-001", quantity=2)])
            reply = await stub.CreateOrder(req, timeout=10)
            assert reply.order.id == first.id and reply.created is False
            reply = await stub.CreateOrder(pb.CreateOrderRequest(
                request_id="new", user_id=2, items=req.items), timeout=10)
            assert reply.created is True

    run(main())


def test_error_codes(url: str) -> None:
    async def main() -> None:
        c = await grpc_client.connect(url)
        try:
            with pytest.raises(NotFound, match="order 999 does not exist"):
                await c.get_order(999)
            with pytest.raises(InvalidRequest, match="order_id"):
                await c.get_order(0)
            with pytest.raises(InvalidRequest, match="limit"):
                await c.list_user_orders(1, limit=0)  # explicit 0 is invalid, as over REST
            with pytest.raises(InvalidRequest, match="catalogue"):
                await c.create_order(CreateOrder("bad", 1, (ItemRequest("NOPE", 1),)))
            with pytest.raises(InvalidRequest, match="items"):
                await c.create_order(CreateOrder("empty", 1, ()))
            with pytest.raises(InvalidRequest, match="request_id"):
                await c.create_order(CreateOrder("", 1, (ItemRequest("SKU-001", 1),)))
            # Values protobuf cannot carry fail as InvalidRequest before anything is sent.
            with pytest.raises(InvalidRequest, match="cannot be encoded"):
                await c.get_order(2**70)
            with pytest.raises(InvalidRequest, match="cannot be encoded"):
                await c.get_order("7")  # type: ignore[arg-type]
        finally:
            await c.close()
        # The codes on the wire, not only the client's mapping.
        async with grpc.aio.insecure_channel(grpc_client.parse_target(url)) as ch:
            stub = pb_grpc.OrderServiceStub(ch)
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await stub.GetOrder(pb.GetOrderRequest(order_id=999), timeout=10)
            assert exc.value.code() == grpc.StatusCode.NOT_FOUND
            assert exc.value.details() == "order 999 does not exist"
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await stub.GetUserOrders(pb.GetUserOrdersRequest(user_id=-1), timeout=10)
            assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    run(main())


def test_health_and_reflection(url: str) -> None:
    async def main() -> None:
        async with grpc.aio.insecure_channel(grpc_client.parse_target(url)) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            for name in ("", SERVICE_NAME):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
            assert exc.value.code() == grpc.StatusCode.NOT_FOUND

            refl = reflection_pb2_grpc.ServerReflectionStub(ch)
            call = refl.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
            replies = [r async for r in call]
            names = {s.name for s in replies[0].list_services_response.service}
            # The names the server reflects, against the proto's own (not the server's
            # constant): the order service under its package, and health.
            proto_name = pb.DESCRIPTOR.services_by_name["OrderService"].full_name
            assert proto_name == "commbench.orders.v1.OrderService"
            assert {proto_name, "grpc.health.v1.Health"} <= names
            # ... and reflection serves the file that defines it, as grpcurl would ask.
            call = refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
                file_containing_symbol=proto_name)]), timeout=10)
            (reply,) = [r async for r in call]
            (raw,) = reply.file_descriptor_response.file_descriptor_proto
            fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
            assert fd.package == "commbench.orders.v1"
            assert {m.name for m in fd.service[0].method} >= {"GetOrder", "GetUserOrders",
                                                               "CreateOrder"}

    run(main())


def test_stream_starts_with_current_status(url: str) -> None:
    terminal = next(o for o in SEEDED.values() if o.status in TERMINAL_STATUSES)
    open_ = next(o for o in SEEDED.values() if o.status not in TERMINAL_STATUSES)

    async def main() -> None:
        c = await grpc_client.connect(url)
        try:
            # A terminal order: its current state, then the stream ends.
            assert [o async for o in c.stream_order_updates(terminal.id)] == [terminal]
            # An open order: the first update is its current state; leaving early is clean.
            updates = c.stream_order_updates(open_.id)
            assert await anext(updates) == open_
            await updates.aclose()
            with pytest.raises(NotFound):
                await anext(c.stream_order_updates(999))
            assert await c.get_order(open_.id) == open_  # the channel still works
        finally:
            await c.close()

    run(main())


def test_stream_follows_status_changes() -> None:
    """In-process server, so the test can change a status through the core."""
    order = next(o for o in SEEDED.values() if o.status == "created")

    async def main() -> None:
        service = await build_service("memory", SEED)
        server = grpc.aio.server()
        add_to_server(OrderServicer(service), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        c = await grpc_client.connect(f"grpc://127.0.0.1:{port}")
        try:
            updates = c.stream_order_updates(order.id, timeout=30)
            assert (await anext(updates)).status == "created"  # watcher now registered
            await service.set_status(order.id, "paid")
            assert (await anext(updates)).status == "paid"
            await service.set_status(order.id, "delivered")
            last = await anext(updates)
            assert last.status == "delivered" and last.id == order.id
            with pytest.raises(StopAsyncIteration):
                await anext(updates)
            assert service._watchers == {}  # the server unregistered its watcher
        finally:
            await c.close()
            await server.stop(0)

    run(main())


# Bytes no request message of the service parses: a truncated varint tag, a length-delimited
# field cut short, a tag with field number 0, an invalid wire type.
JUNK = (b"\xff\xff\xff\xff", b"\x0a\x05ab", b"\x00", b"garbage!")
METHODS = [m.name for m in pb.DESCRIPTOR.services_by_name["OrderService"].methods]


def test_undecodable_request_is_invalid_argument_on_every_method(url: str) -> None:
    """Raw bytes over a real channel (no serializers): every method answers INVALID_ARGUMENT
    with a short detail, not grpc.aio's UNKNOWN, and valid calls still work afterwards."""
    service = pb.DESCRIPTOR.services_by_name["OrderService"]
    assert {m.name for m in service.methods} == set(METHODS)

    async def main() -> None:
        async with grpc.aio.insecure_channel(grpc_client.parse_target(url)) as ch:
            for method in service.methods:
                path = f"/{SERVICE_NAME}/{method.name}"
                factory = ch.unary_stream if method.server_streaming else ch.unary_unary
                raw = factory(path, request_serializer=None, response_deserializer=None)
                for junk in JUNK:
                    with pytest.raises(grpc.aio.AioRpcError) as exc:
                        call = raw(junk, timeout=10)
                        if method.server_streaming:
                            await anext(aiter(call))
                        else:
                            await call
                    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (
                        method.name, junk, exc.value.code(), exc.value.details())
                    detail = exc.value.details() or ""
                    assert detail.startswith("undecodable request: ") and len(detail) < 200
                    assert method.input_type.full_name in detail

            raw_get = ch.unary_unary(f"/{SERVICE_NAME}/GetOrder", request_serializer=None,
                                     response_deserializer=None)
            ok = await raw_get(pb.GetOrderRequest(order_id=3).SerializeToString(), timeout=10)
            assert pb.Order.FromString(ok).id == 3
            # An empty message is valid protobuf (every field unset): the core judges it.
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await raw_get(b"", timeout=10)
            assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert exc.value.details() == "order_id must be a positive integer"
            # Health and reflection are still served beside the lenient handlers.
            health = health_pb2_grpc.HealthStub(ch)
            reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME),
                                       timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        c = await grpc_client.connect(url)
        try:
            assert await c.get_order(3) == SEEDED[3]
            assert [o.id for o in await c.list_user_orders(2)] == [6, 5, 4]
            assert (await c.create_order(_create("after-junk"))).id == SEED.total + 1
            updates = c.stream_order_updates(3)
            assert await anext(updates) == SEEDED[3]
            await updates.aclose()
        finally:
            await c.close()

    run(main())


def test_transport_errors(launcher) -> None:
    import signal

    svc = launcher.start("grpc", ServeConfig(seed=SEED))

    async def main() -> None:
        c = await grpc_client.connect(svc.url, timeout=30)  # connecting is not under test
        try:
            c.timeout = 0.5  # the call's deadline: it must fire while the server is paused
            svc.signal(signal.SIGSTOP)  # a paused server cannot answer: the deadline fires
            with pytest.raises(TransportError) as exc:
                await c.get_order(1)
            assert exc.value.kind == "timeout"
            svc.signal(signal.SIGCONT)
            c.timeout = 10.0
            assert await c.get_order(1) == SEEDED[1]
            assert svc.stop() == 0  # SIGTERM: graceful stop, clean exit
            with pytest.raises(TransportError) as exc:
                await c.get_order(1)
            assert exc.value.kind == "grpc_unavailable"
        finally:
            await c.close()
        log = svc.log_path.read_text()
        assert "Traceback" not in log

    run(main())


def test_connect_refused() -> None:
    with socket.socket() as s:  # a port that was free a moment ago and has no listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main() -> None:
        with pytest.raises(TransportError) as exc:
            await grpc_client.connect(f"grpc://127.0.0.1:{port}", timeout=10)
        assert exc.value.kind == "refused"

    run(main())


def test_port_in_use_is_one_line() -> None:
    commbench = Path(sys.executable).parent / "commbench"
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        proc = subprocess.run([str(commbench), "serve", "grpc", "--port", str(port)],
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"port {port} on 127.0.0.1 is in use" in lines[0]
    assert "Traceback" not in proc.stderr


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    """The generated modules are committed; regenerate and fail when they are stale."""
    pytest.importorskip("grpc_tools")
    from targets.grpc.generate import OUTPUTS, generate

    generate(tmp_path)
    _, mismatch, missing = filecmp.cmpfiles(GRPC_DIR, tmp_path, OUTPUTS, shallow=False)
    assert not (mismatch or missing), (
        f"stale generated code {mismatch + missing}: run `python -m targets.grpc.generate` "
        "with the pinned grpcio-tools (dev extras) and commit the result")
