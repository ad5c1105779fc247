"""Seeded request data: which operation, which order or user, which items.

Request k of a run is a pure function of (scenario seed, k): every process draws the random
numbers of every arrival and builds only its own requests, so the same requests go out
whatever the number of generator processes, and two runs of one scenario send the same ones.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

from harness.scenario import DataSpec, Operations
from targets.core.model import CATALOGUE, CreateOrder, ItemRequest

SKUS = tuple(sorted(CATALOGUE))
MAX_ITEMS_PER_CREATE = 3
MAX_QUANTITY = 5


@dataclass(frozen=True, slots=True)
class Request:
    k: int
    op: str  # get | list | create
    order_id: int = 0
    user_id: int = 0
    limit: int = 0
    create: CreateOrder | None = None


class Workload:
    """A stream of requests drawn from one RNG; `draw(k, build)` always consumes the same
    random numbers per request, building the request only when `build` is true."""

    def __init__(self, ops: Operations, data: DataSpec, id_prefix: str, stream: str) -> None:
        weights = ops.weights()
        self._ops = tuple(weights)
        self._cum = list(itertools.accumulate(weights.values()))
        self._total = self._cum[-1]
        self._limit = ops.list_limit
        self._users = data.users
        self._orders = data.users * data.orders_per_user
        self._prefix = id_prefix
        self._rng = random.Random(f"workload/{data.seed}/{stream}")

    def draw(self, k: int, build: bool = True) -> Request | None:
        r = self._rng.random
        op = self._ops[bisect.bisect_right(self._cum, r() * self._total)] \
            if len(self._ops) > 1 else self._ops[0]
        # Fixed number of draws per request, whatever the operation.
        a, b, c = r(), r(), r()
        items = [(r(), r()) for _ in range(MAX_ITEMS_PER_CREATE)]
        if not build:
            return None
        if op == "get":
            return Request(k, op, order_id=1 + int(a * self._orders))
        if op == "list":
            return Request(k, op, user_id=1 + int(b * self._users), limit=self._limit)
        n_items = 1 + int(c * MAX_ITEMS_PER_CREATE)
        req = CreateOrder(
            request_id=f"{self._prefix}-{k}",
            user_id=1 + int(b * self._users),
            items=tuple(
                ItemRequest(SKUS[int(s * len(SKUS))], 1 + int(q * MAX_QUANTITY))
                for s, q in items[:n_items]
            ),
        )
        return Request(k, op, user_id=req.user_id, create=req)

    def own(self, index: int, count: int) -> Iterator[Request]:
        """Requests k = index, index+count, ... (drawing, not building, the others)."""
        for k in itertools.count():
            req = self.draw(k, build=k % count == index)
            if req is not None:
                yield req
