"""The domain core in isolation: validation, stores, seeding, status watching."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from targets.core.errors import InvalidRequest, NotFound, error_from_kind
from targets.core.model import CATALOGUE, CreateOrder, ItemRequest, Order
from targets.core.seed import SeedSpec, seed_orders
from targets.core.service import OrderService, build_service
from targets.core.store import MemoryStore, SQLiteStore, open_store
from targets.core.validation import create_from_dict
from tests.conftest import run


@pytest.fixture
def aio() -> Iterator[Callable]:  # type: ignore[type-arg]
    """Run coroutines on one loop for the whole test: a PostgreSQL pool belongs to its loop."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        yield runner.run


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def service(request, tmp_path: Path, aio: Callable) -> Iterator[OrderService]:  # type: ignore[type-arg]
    spec = {"memory": lambda: "memory", "sqlite": lambda: f"sqlite:{tmp_path / 'orders.db'}",
            "postgresql": lambda: request.getfixturevalue("pg_store")}[request.param]()
    service = aio(build_service(spec, SeedSpec(users=4, orders_per_user=3, seed=9)))
    yield service
    aio(service.store.close())


def req(rid: str = "r1", user: int = 1, *items: tuple[str, int]) -> CreateOrder:
    return CreateOrder(rid, user, tuple(ItemRequest(s, q) for s, q in (items or (("SKU-001", 2),))))


def test_seed_is_deterministic_and_user_major() -> None:
    a = seed_orders(SeedSpec(users=3, orders_per_user=4, seed=5))
    b = seed_orders(SeedSpec(users=3, orders_per_user=4, seed=5))
    c = seed_orders(SeedSpec(users=3, orders_per_user=4, seed=6))
    assert [o.to_dict() for o in a] == [o.to_dict() for o in b]
    assert [o.to_dict() for o in a] != [o.to_dict() for o in c]
    assert [o.id for o in a] == list(range(1, 13))
    assert [o.user_id for o in a] == [u for u in (1, 2, 3) for _ in range(4)]
    for o in a:
        assert o.total_cents == sum(i.quantity * CATALOGUE[i.sku] for i in o.items)


def test_both_stores_hold_the_same_seed(tmp_path: Path) -> None:
    spec = SeedSpec(users=5, orders_per_user=2, seed=3)
    async def body() -> None:
        mem = await build_service("memory", spec)
        sql = await build_service(f"sqlite:{tmp_path / 'o.db'}", spec)
        for oid in range(1, 11):
            assert (await mem.get_order(oid)).to_dict() == (await sql.get_order(oid)).to_dict()
        assert [o.id for o in await mem.list_user_orders(2)] == \
            [o.id for o in await sql.list_user_orders(2)] == [4, 3]
        await sql.store.close()

    run(body())


def test_get_and_list(service: OrderService, aio: Callable) -> None:
    assert aio(service.get_order(5)).user_id == 2
    with pytest.raises(NotFound):
        aio(service.get_order(999))
    assert [o.id for o in aio(service.list_user_orders(2, limit=2))] == [6, 5]
    assert aio(service.list_user_orders(77)) == []


def test_create_prices_from_catalogue_and_is_idempotent(service: OrderService, aio: Callable) -> None:
    order, new = aio(service.create_order(req("a", 1, ("SKU-002", 3), ("SKU-005", 1))))
    assert new and order.id == 13
    assert order.total_cents == 3 * CATALOGUE["SKU-002"] + CATALOGUE["SKU-005"]
    again, new_again = aio(service.create_order(req("a", 2, ("SKU-001", 1))))
    assert not new_again and again == order
    assert aio(service.store.count()) == 13


@pytest.mark.parametrize(
    "bad, field",
    [
        (req("", 1), "request_id"),
        (req("x" * 65, 1), "request_id"),
        (req("r", 0), "user_id"),
        (CreateOrder("r", 1, ()), "items"),
        (CreateOrder("r", 1, tuple(ItemRequest("SKU-001", 1) for _ in range(51))), "items"),
        (req("r", 1, ("SKU-999", 1)), "items[0].sku"),
        (req("r", 1, ("SKU-001", 0)), "items[0].quantity"),
        (req("r", 1, ("SKU-001", 1001)), "items[0].quantity"),
        (req("r", 1, ("SKU-001", 1), ("SKU-001", True)), "items[1].quantity"),  # type: ignore[arg-type]
    ],
)
def test_invalid_creates_name_the_field(service: OrderService, aio: Callable, bad: CreateOrder,
                                        field: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        aio(service.create_order(bad))
    assert exc.value.field == field


@pytest.mark.parametrize("limit", [0, -1, 1001, "5", 2.5])
def test_invalid_limits(service: OrderService, aio: Callable, limit: object) -> None:
    with pytest.raises(InvalidRequest):
        aio(service.list_user_orders(1, limit))  # type: ignore[arg-type]


@pytest.mark.parametrize("body", [[], "x", {"items": "no"}, {"items": [1]}])
def test_create_from_dict_rejects_shapes(body: object) -> None:
    with pytest.raises(InvalidRequest):
        create_from_dict(body)


def test_create_from_dict_then_core_rejects_wrong_types(service: OrderService, aio: Callable) -> None:
    parsed = create_from_dict({"request_id": 5, "user_id": "1", "items": [{"sku": "SKU-001", "quantity": 1}]})
    with pytest.raises(InvalidRequest):
        aio(service.create_order(parsed))


def test_sqlite_store_is_durable(tmp_path: Path) -> None:
    path = tmp_path / "d.db"

    async def body() -> None:
        first = await build_service(f"sqlite:{path}", SeedSpec(users=2, orders_per_user=2, seed=1))
        made, _ = await first.create_order(req("keep", 1))
        await first.store.close()
        reopened = await build_service(f"sqlite:{path}",
                                       SeedSpec(users=2, orders_per_user=2, seed=1))
        assert await reopened.get_order(made.id) == made
        assert await reopened.store.count() == 5  # not seeded twice
        await reopened.store.close()

    run(body())


def test_open_store_rejects_unknown_spec(tmp_path: Path) -> None:
    assert isinstance(run(open_store("memory")), MemoryStore)
    sqlite = run(open_store(f"sqlite:{tmp_path / 's.db'}"))
    try:
        assert isinstance(sqlite, SQLiteStore) and (tmp_path / "s.db").exists()
    finally:
        run(sqlite.close())
    with pytest.raises(ValueError, match="sqlite:PATH"):
        run(open_store("postgres"))
    with pytest.raises(ValueError):
        run(open_store("sqlite:"))


def test_watch_streams_status_changes_until_terminal(service: OrderService, aio: Callable) -> None:
    async def scenario() -> list[str]:
        order, _ = await service.create_order(req("w", 1))
        seen: list[str] = []
        watcher = service.watch(order.id)
        seen.append((await anext(watcher)).status)
        await service.set_status(order.id, "paid")
        await service.set_status(order.id, "delivered")
        async for update in watcher:
            seen.append(update.status)
        return seen

    assert aio(scenario()) == ["created", "paid", "delivered"]


def test_error_kinds_round_trip() -> None:
    assert isinstance(error_from_kind("not_found", "x"), NotFound)
    assert isinstance(error_from_kind("invalid", "x"), InvalidRequest)
    other = error_from_kind("timeout", "slow")
    assert other.kind == "timeout" and str(other) == "slow"


def test_order_dict_round_trip() -> None:
    o = seed_orders(SeedSpec(users=1, orders_per_user=1, seed=2))[0]
    assert Order.from_dict(o.to_dict()) == o
