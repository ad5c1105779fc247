"""Seeded request data: which operation, which order or user, which items.

Request k of a run is a pure function of (scenario seed, k): every process consumes the random
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
# Random numbers per request after the operation's: order, user, item count, (sku, quantity)s.
_FIXED_DRAWS = 3 + 2 * MAX_ITEMS_PER_CREATE
# random.Random.random() consumes two 32-bit Mersenne Twister outputs and getrandbits(64 * n)
# exactly 2n, so skipping n numbers with one getrandbits call leaves the generator in the same
# state as n calls of random() (tests/test_schedule.py holds the stream to a fixed fingerprint).
_BITS_PER_RANDOM = 64


@dataclass(slots=True)
class Request:
    """Not frozen: one is built per request on the hot path, and a frozen slots dataclass
    costs over three times as much to create (its __init__ goes through object.__setattr__)."""

    k: int
    op: str  # get | list | create | noop
    order_id: int = 0
    user_id: int = 0
    limit: int = 0
    create: CreateOrder | None = None


class Workload:
    """A stream of requests drawn from one RNG. Every request consumes the same count of
    random numbers, whatever its operation, so `skip(n)` can pass over requests of other
    processes without building (or even drawing) them."""

    def __init__(self, ops: Operations, data: DataSpec, id_prefix: str, stream: str) -> None:
        weights = ops.weights()
        self._ops = tuple(weights)
        self._choose = len(self._ops) > 1  # one operation: no random number for it
        self._cum = list(itertools.accumulate(weights.values()))
        self._total = self._cum[-1]
        self._limit = ops.list_limit
        self._users = data.users
        self._orders = data.users * data.orders_per_user
        self._prefix = id_prefix
        self._rng = random.Random(f"workload/{data.seed}/{stream}")
        self._skip_bits = _BITS_PER_RANDOM * (_FIXED_DRAWS + self._choose)

    def draw(self, k: int) -> Request:
        """Request `k` (the caller numbers them: this is the next one in the stream)."""
        r = self._rng.random
        op = self._ops[bisect.bisect_right(self._cum, r() * self._total)] \
            if self._choose else self._ops[0]
        # Always the same draws, flat (pairs are built only for a create).
        a, b, c, s0, q0, s1, q1, s2, q2 = r(), r(), r(), r(), r(), r(), r(), r(), r()
        if op == "noop":
            return Request(k, op)
        if op == "get":
            return Request(k, op, 1 + int(a * self._orders))
        if op == "list":
            return Request(k, op, 0, 1 + int(b * self._users), self._limit)
        n_items = 1 + int(c * MAX_ITEMS_PER_CREATE)
        skus, qty = len(SKUS), MAX_QUANTITY
        items = tuple([ItemRequest(SKUS[int(s * skus)], 1 + int(q * qty))
                       for s, q in ((s0, q0), (s1, q1), (s2, q2))[:n_items]])
        user = 1 + int(b * self._users)
        req = CreateOrder(f"{self._prefix}-{k}", user, items)
        return Request(k, op, 0, user, 0, req)

    def skip(self, n: int) -> None:
        """Pass over the next `n` requests: the same random numbers consumed as n draws."""
        if n > 0:
            self._rng.getrandbits(self._skip_bits * n)

    def own(self, index: int, count: int) -> Iterator[Request]:
        """Requests k = index, index+count, ... (skipping the others' random numbers)."""
        self.skip(index)
        for k in itertools.count(index, count):
            yield self.draw(k)
            self.skip(count - 1)
