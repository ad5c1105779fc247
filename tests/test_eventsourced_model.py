"""The read side's pure logic: the fold and the projection's per-stream ordering."""

from __future__ import annotations

from targets.core.model import STATUS_CREATED, STATUS_PAID, STATUS_SHIPPED, Item, Order
from targets.eventsourced.events import Event, fold, order_created, status_changed
from targets.eventsourced.projection import ReadModel


def _stream(stream_id: int, user: int, statuses: list[str], first_position: int) -> list[Event]:
    order = Order(stream_id, user, (Item("SKU-001", 2, 499),), 998, STATUS_CREATED, 1_000,
                  f"r{stream_id}")
    new = [order_created(order), *(status_changed(s, 2_000 + n) for n, s in enumerate(statuses))]
    return [Event(first_position + n, stream_id, n + 1, e.type, e.data, e.recorded_at_ms)
            for n, e in enumerate(new)]


def test_fold_gives_the_last_state_and_version() -> None:
    events = _stream(7, 3, [STATUS_PAID, STATUS_SHIPPED], 1)
    state, version = fold(events)
    assert state is not None and (state.id, state.status, version) == (7, STATUS_SHIPPED, 3)
    assert fold(events[:1])[0].status == STATUS_CREATED  # type: ignore[union-attr]
    assert fold([]) == (None, 0)


def test_events_arriving_out_of_order_are_applied_in_version_order() -> None:
    a, b = _stream(1, 5, [STATUS_PAID, STATUS_SHIPPED], 1), _stream(2, 5, [], 4)
    model = ReadModel()
    for event in (a[2], b[0], a[1]):  # a's created is late: a's changes wait for it
        model.apply(event)
    assert model.get(1) is None and model.get(2) is not None
    model.apply(a[0])
    assert model.get(1).status == STATUS_SHIPPED  # type: ignore[union-attr]
    assert model.versions == {1: 3, 2: 1} and model.applied == 4
    assert [o.id for o in model.list_by_user(5, 10)] == [2, 1]  # newest (highest id) first


def test_an_event_applied_twice_changes_nothing() -> None:
    events = _stream(3, 1, [STATUS_PAID], 1)
    model = ReadModel()
    for event in events + events:
        model.apply(event)
    assert model.applied == 2 and model.get(3).status == STATUS_PAID  # type: ignore[union-attr]
    replayed = ReadModel()
    for event in events:
        replayed.apply(event)
    assert replayed.snapshot() == model.snapshot()
