"""The load engine of one generator process, on asyncio (uvloop in practice).

Open loop: one dispatcher coroutine walks the arrival schedule, sleeps until the next
intended start and then starts every arrival whose time has come (a batch per wake-up, so
dispatch stays cheap), never more than `in_flight` at once. When the bound is reached it
waits, and that wait counts: latency runs from the intended start, so a stalled target or a
saturated generator shows up in latency instead of being omitted. Service time runs from
the actual send; schedule lag (send − intended) is recorded per second.

Closed loop: N virtual users each loop send → await → think; latency equals service time.

Every timestamp is time.monotonic_ns() (CLOCK_MONOTONIC: one clock for all processes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.recorder import ACCEPTED, NS, Recorder, SecondRecord
from harness.scenario import Scenario
from harness.schedule import IntendedCounter, process_arrivals, segments
from harness.workload import Request, Workload
from targets.api import OrderClient
from targets.core.errors import OrderError

UNFINISHED = "unfinished"  # still in flight when the drain deadline passed
DRAIN_GRACE_S = 2.0
TICK_SLACK_NS = 2_000_000  # close a second 2 ms after it ends

mono = time.monotonic_ns


@dataclass(frozen=True)
class EngineConfig:
    """What one generator process needs to know (picklable: it crosses into workers)."""

    scenario: Scenario
    index: int = 0  # this process
    count: int = 1  # processes in total
    id_prefix: str = "run"  # request ids are f"{id_prefix}-{k}": unique per run
    record_accepted: bool = False  # queue: also record `create_accepted`

    @property
    def schedule_seed(self) -> str:
        return f"{self.scenario.data.seed}"


@dataclass
class EngineStats:
    sent: int = 0
    in_flight_waits: int = 0  # times the dispatcher found the in-flight bound reached
    unfinished: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Engine:
    def __init__(self, client: OrderClient, cfg: EngineConfig,
                 sink: Callable[[SecondRecord], None]) -> None:
        self.client = client
        self.cfg = cfg
        self.sink = sink
        self.stats = EngineStats()
        self.in_flight = 0
        self._slot = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, t0_ns: int) -> EngineStats:
        """Run warm-up and measurement starting at monotonic time `t0_ns`, then drain."""
        sc = self.cfg.scenario
        warm_ns = round(sc.warmup_s * NS)
        self.measure_start_ns = t0_ns + warm_ns
        self.end_ns = self.measure_start_ns + round(sc.duration_s * NS)
        intended_in = None
        if sc.load.model == "open":
            counter = IntendedCounter(segments(sc.load, sc.warmup_s), sc.load.arrival,
                                      self.cfg.schedule_seed, self.cfg.index, self.cfg.count,
                                      warm_ns)
            intended_in = lambda s: counter.count_until(counter.second_boundary(s))  # noqa: E731
        first = -((warm_ns + NS - 1) // NS)
        self.rec = Recorder(self.measure_start_ns, first, self.sink, intended_in)
        ticker = asyncio.create_task(self._tick())
        try:
            now = mono()
            if t0_ns > now:
                await asyncio.sleep((t0_ns - now) / NS)
            if sc.load.model == "open":
                await self._open_loop(t0_ns)
            else:
                await self._closed_loop()
                await asyncio.sleep(max(0, self.end_ns - mono()) / NS)
            await self._drain(sc.load.timeout_s + DRAIN_GRACE_S)
        finally:
            ticker.cancel()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            self.rec.close_all()
        return self.stats

    async def _tick(self) -> None:
        second = (mono() - self.measure_start_ns) // NS
        while True:
            second += 1
            wake = self.measure_start_ns + second * NS + TICK_SLACK_NS
            await asyncio.sleep(max(0, wake - mono()) / NS)
            self.rec.close_until(mono())

    # -- open loop -----------------------------------------------------------------------

    async def _open_loop(self, t0_ns: int) -> None:
        sc, cfg = self.cfg.scenario, self.cfg
        arrivals = process_arrivals(segments(sc.load, sc.warmup_s), sc.load.arrival,
                                    cfg.schedule_seed, cfg.index, cfg.count)
        requests = Workload(sc.operations, sc.data, cfg.id_prefix, "open").own(cfg.index,
                                                                              cfg.count)
        limit = sc.load.in_flight
        loop = asyncio.get_running_loop()
        for (_k, offset), req in zip(arrivals, requests, strict=False):
            intended = t0_ns + offset
            now = mono()
            if intended > now:
                await asyncio.sleep((intended - now) / NS)
            if self.in_flight >= limit:
                self.stats.in_flight_waits += 1
                while self.in_flight >= limit:
                    self._slot.clear()
                    await self._slot.wait()
            self.in_flight += 1
            task = loop.create_task(self._call(req, intended))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _call(self, req: Request, intended: int) -> None:
        sent = mono()
        rec = self.rec
        rec.started(sent, sent - intended)
        self.stats.sent += 1
        kind: str | None = None
        try:
            await self._send(req, intended, sent)
        except OrderError as exc:
            kind = exc.kind
        except asyncio.CancelledError:
            rec.record(req.op, UNFINISHED, intended, sent, mono())
            self.stats.unfinished += 1
            raise
        except Exception as exc:  # a client bug must not stop the run; it is counted
            kind = type(exc).__name__
        finally:
            self.in_flight -= 1
            self._slot.set()
        rec.record(req.op, kind, intended, sent, mono())

    async def _send(self, req: Request, intended: int, sent: int) -> None:
        c = self.client
        if req.op == "get":
            await c.get_order(req.order_id)
        elif req.op == "list":
            await c.list_user_orders(req.user_id, req.limit)
        else:
            assert req.create is not None
            if self.cfg.record_accepted:
                rec = self.rec

                def accepted() -> None:
                    rec.record(ACCEPTED, None, intended, sent, mono())

                await c.create_order(req.create, on_accepted=accepted)
            else:
                await c.create_order(req.create)

    # -- closed loop ---------------------------------------------------------------------

    async def _closed_loop(self) -> None:
        sc, cfg = self.cfg.scenario, self.cfg
        users = range(cfg.index, sc.load.users, cfg.count)
        loop = asyncio.get_running_loop()
        for u in users:
            task = loop.create_task(self._user(u))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _user(self, u: int) -> None:
        sc = self.cfg.scenario
        wl = Workload(sc.operations, sc.data, f"{self.cfg.id_prefix}-u{u}", f"user/{u}")
        think = sc.load.think_time_s
        k = 0
        while mono() < self.end_ns:
            req = wl.draw(k)
            assert req is not None
            k += 1
            # The intended start of a closed-loop request is its send: latency = service.
            sent = mono()
            self.in_flight += 1
            await self._call(req, sent)
            if think > 0:
                await asyncio.sleep(think)

    async def _drain(self, timeout_s: float) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)


async def run_engine(client: OrderClient, cfg: EngineConfig, t0_ns: int,
                     sink: Callable[[SecondRecord], None]) -> EngineStats:
    return await Engine(client, cfg, sink).run(t0_ns)
