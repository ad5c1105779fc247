"""The load engine of one generator process, on asyncio (uvloop in practice).

Open loop: a dispatcher walks the arrival schedule and starts every arrival whose intended
start has come (a batch per wake-up), never more than `in_flight` at once. It is woken by a
microsecond timer (a timerfd: uvloop's timers have 1 ms granularity) and never sends early.
When the bound is reached it waits for a finishing request, and that wait counts: latency
runs from the intended start, so a stalled target or a saturated generator shows up in
latency instead of being omitted. Service time runs from the actual send; schedule lag
(send − intended) is recorded per second.

Closed loop: N virtual users each loop send → await → think; latency equals service time.

Read-your-writes (scenario `read_your_writes`): right after a create's answer is recorded,
the same task looks the order up once and counts whether it was there. The lookup is not a
request of the mix: it is in no latency, throughput or error figure, and it takes no in-flight
slot; the scenario turns it on for every target alike, so each carries the same extra load.

Every timestamp is time.monotonic_ns() (CLOCK_MONOTONIC: one clock for all processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.load.heap import GcPauses, GcWatch
from harness.load.recorder import ACCEPTED, NS, Recorder, SecondRecord
from harness.load.schedule import IntendedCounter, process_arrivals, segments
from harness.load.workload import Request, Workload
from harness.scenario import Scenario
from targets.api import OrderClient
from targets.core.errors import NotFound, OrderError

UNFINISHED = "unfinished"  # still in flight when the drain deadline passed
DRAIN_GRACE_S = 2.0
TICK_SLACK_NS = 2_000_000  # close a second 2 ms after it ends
COUNT_EVERY_NS = 50_000_000  # intended arrivals are counted in 50 ms steps, not per second
# A second's histograms are built one at a time, this far apart (~1 ms each at 5,000/s): with
# no gap (one loop pass) the responses and arrivals of one step were still being handled when
# the next began, and the lag of the second's close still added up to about 3 ms
# (bench/README.md).
CLOSE_STEP_GAP_S = 0.002


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK, _TFD_CLOEXEC, _TFD_TIMER_ABSTIME = 0o4000, 0o2000000, 1


class Timer:
    """Calls `callback` at a monotonic_ns() instant, to the microsecond: a Linux timerfd
    (CLOCK_MONOTONIC, absolute) watched by the event loop. uvloop's own timers have 1 ms
    granularity, which would add up to a millisecond of schedule lag to every dispatch.
    Elsewhere it falls back to loop.call_at."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None
        self._fd = -1
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            self._settime = libc.timerfd_settime
            self._fd = libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        except (OSError, AttributeError):
            self._fd = -1
        if self._fd >= 0:
            self._spec = _Itimerspec()
            self._spec_ref = ctypes.byref(self._spec)
            loop.add_reader(self._fd, self._fire)

    def at(self, t_ns: int) -> None:
        """(Re-)arm for `t_ns` (replaces any earlier instant)."""
        if self._fd >= 0:
            v = self._spec.it_value
            v.tv_sec, v.tv_nsec = divmod(t_ns, NS)
            self._settime(self._fd, _TFD_TIMER_ABSTIME, self._spec_ref, None)
        else:
            if self._handle is not None:
                self._handle.cancel()
            self._handle = self._loop.call_at(self._loop.time() + (t_ns - mono()) / NS,
                                              self._callback)

    def _fire(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._fd, 8)
        self._callback()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1

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
    """What a process reports besides its seconds (run.json `in_flight_waits`)."""

    in_flight_waits: int = 0  # times the dispatcher found the in-flight bound reached
    gc: GcPauses = field(default_factory=GcPauses)  # collections during the run (run.json `gc`)


class Engine:
    def __init__(self, client: OrderClient, cfg: EngineConfig,
                 sink: Callable[[SecondRecord], None]) -> None:
        self.client = client
        self.cfg = cfg
        self.sink = sink
        self.stats = EngineStats()
        self.in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._blocked = False  # open loop: dispatch waits for a free in-flight slot
        self._next: tuple[int, Request] | None = None
        self._read_backs = cfg.scenario.read_your_writes  # read each created order back

    async def run(self, t0_ns: int) -> EngineStats:
        """Run warm-up and measurement starting at monotonic time `t0_ns`, then drain."""
        sc = self.cfg.scenario
        warm_ns = round(sc.warmup_s * NS)
        self.measure_start_ns = t0_ns + warm_ns
        self.end_ns = self.measure_start_ns + round(sc.duration_s * NS)
        first = -((warm_ns + NS - 1) // NS)
        self.intended: _Intended | None = None
        if sc.load.model == "open":
            counter = IntendedCounter(segments(sc.load, sc.warmup_s), sc.load.arrival,
                                      self.cfg.schedule_seed, self.cfg.index, self.cfg.count,
                                      warm_ns)
            self.intended = _Intended(counter, first)
        self.rec = Recorder(self.measure_start_ns, first, self.sink,
                            self.intended.of if self.intended is not None else None)
        ticker = asyncio.create_task(self._tick(t0_ns))
        watch = GcWatch(self.stats.gc)  # warm-up and drain included
        watch.start()
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
            watch.stop()
            self.rec.close_all()
        return self.stats

    async def _tick(self, t0_ns: int) -> None:
        """Close each second just after it ends; in between, count intended arrivals in
        small steps so that no single wake-up walks a whole second of the schedule."""
        second = (mono() - self.measure_start_ns) // NS + 1
        while True:
            close_at = self.measure_start_ns + second * NS + TICK_SLACK_NS
            now = mono()
            if now >= close_at:
                for _ in self.rec.closing(now):
                    await asyncio.sleep(CLOSE_STEP_GAP_S)  # the loop catches up in between
                second = (now - self.measure_start_ns) // NS + 1
                continue
            if self.intended is not None:
                self.intended.advance(now - t0_ns)
                await asyncio.sleep(min(close_at - now, COUNT_EVERY_NS) / NS)
            else:
                await asyncio.sleep((close_at - now) / NS)

    # -- open loop -----------------------------------------------------------------------

    async def _open_loop(self, t0_ns: int) -> None:
        """Dispatch the schedule; returns once every arrival has been started."""
        sc, cfg = self.cfg.scenario, self.cfg
        arrivals = process_arrivals(segments(sc.load, sc.warmup_s), sc.load.arrival,
                                    cfg.schedule_seed, cfg.index, cfg.count)
        requests = Workload(sc.operations, sc.data, cfg.id_prefix, "open").own(cfg.index,
                                                                              cfg.count)
        self._pending = ((t0_ns + offset, req)
                         for (_k, offset), req in zip(arrivals, requests, strict=False))
        loop = asyncio.get_running_loop()
        self._limit = sc.load.in_flight
        self._create_task = loop.create_task
        self._dispatched = loop.create_future()
        self._timer = Timer(loop, self._dispatch)
        try:
            self._next = next(self._pending, None)
            self._dispatch()
            await self._dispatched
        finally:
            self._next = None  # no dispatch after this point, whatever calls _dispatch
            self._timer.close()

    def _dispatch(self) -> None:
        """Start every arrival that is due, up to the in-flight bound; then arm the timer for
        the next one. Called by the timer, and by a finishing request when the bound had
        stopped dispatch (that wait counts: latency runs from the intended start)."""
        try:
            self._dispatch_due()
        except Exception as exc:  # from a callback: hand it to the awaiting run, not the loop
            self._next = None
            if not self._dispatched.done():
                self._dispatched.set_exception(exc)

    def _dispatch_due(self) -> None:
        nxt = self._next
        tasks, create_task, call, limit = self._tasks, self._create_task, self._call, self._limit
        while nxt is not None:
            intended, req = nxt
            if intended > mono():
                self._next = nxt
                self._timer.at(intended)
                return
            if self.in_flight >= limit:
                self._next = nxt
                self.stats.in_flight_waits += 1
                self._blocked = True
                return
            self.in_flight += 1
            tasks.add(create_task(call(req, intended)))
            nxt = next(self._pending, None)
        self._next = None
        if not self._dispatched.done():
            self._dispatched.set_result(None)

    async def _call(self, req: Request, intended: int | None) -> None:
        """One request. `intended` None: closed loop, the intended start is the send itself
        (one timestamp: latency equals service time). Otherwise open loop: it runs as its own
        task, counted in self.in_flight and listed in self._tasks until it ends (removed
        here: cheaper than a done callback)."""
        sent = mono()
        dispatched = intended is not None
        if intended is None:
            intended = sent
        rec = self.rec
        rec.started(sent, sent - intended)
        kind: str | None = None
        created: int | None = None  # an order to read back (read_your_writes only)
        try:
            created = await self._send(req, intended, sent)
        except OrderError as exc:
            kind = exc.kind
        except asyncio.CancelledError:
            rec.record(req.op, UNFINISHED, intended, sent, mono())
            raise
        except Exception as exc:  # a client bug must not stop the run; it is counted
            kind = type(exc).__name__
        finally:
            if dispatched:
                self.in_flight -= 1
                if created is None:  # else listed until its read-back ends (the drain waits)
                    self._tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
        rec.record(req.op, kind, intended, sent, mono())
        if self._blocked:
            self._blocked = False
            self._dispatch()
        if created is not None:
            try:
                await self._read_back(created, intended)
            finally:
                if dispatched:
                    self._tasks.discard(asyncio.current_task())  # type: ignore[arg-type]

    async def _read_back(self, order_id: int, intended: int) -> None:
        """Look a just-created order up: seen, or not (a read-your-writes violation). A
        lookup that fails otherwise (timeout, error) counts as neither."""
        try:
            await self.client.get_order(order_id)
            seen = True
        except NotFound:
            seen = False
        except Exception:
            return
        self.rec.read_back(intended, mono(), seen)

    async def _send(self, req: Request, intended: int, sent: int) -> int | None:
        """Send one request; the id of the order it created when that order is to be read
        back."""
        c = self.client
        if req.op == "noop":
            await c.noop()
        elif req.op == "get":
            await c.get_order(req.order_id)
        elif req.op == "list":
            await c.list_user_orders(req.user_id, req.limit)
        else:
            assert req.create is not None
            if self.cfg.record_accepted:
                rec = self.rec

                def accepted() -> None:
                    rec.record(ACCEPTED, None, intended, sent, mono())

                order = await c.create_order(req.create, on_accepted=accepted)
            else:
                order = await c.create_order(req.create)
            return order.id if self._read_backs else None
        return None

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
            k += 1
            await self._call(req, None)
            if think > 0:
                await asyncio.sleep(think)

    async def _drain(self, timeout_s: float) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)


class _Intended:
    """Intended arrivals per second, counted from a private copy of the schedule (so the
    counts do not depend on how far behind dispatch runs) in small steps as time passes."""

    def __init__(self, counter: IntendedCounter, first_second: int) -> None:
        self._counter = counter
        self._second = first_second  # the second being counted
        self._counts: dict[int, int] = {}

    def advance(self, offset_ns: int) -> None:
        """Count every arrival with an offset (from the start of warm-up) before `offset_ns`."""
        c = self._counter
        while True:
            boundary = c.second_boundary(self._second)
            n = c.count_until(min(offset_ns, boundary))
            if n:
                self._counts[self._second] = self._counts.get(self._second, 0) + n
            if offset_ns < boundary:
                return
            self._second += 1

    def of(self, second: int) -> int:
        """All intended arrivals of `second` (the recorder asks once, as it closes it)."""
        self.advance(self._counter.second_boundary(second))
        return self._counts.pop(second, 0)


async def run_engine(client: OrderClient, cfg: EngineConfig, t0_ns: int,
                     sink: Callable[[SecondRecord], None]) -> EngineStats:
    return await Engine(client, cfg, sink).run(t0_ns)
