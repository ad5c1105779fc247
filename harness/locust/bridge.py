"""asyncio clients under locust: one asyncio loop per locust process, in a native OS thread.

Locust runs on gevent and monkey-patches the standard library; there is no supported asyncio
bridge (see docs/locust-asyncio.md). What works, and what this module does:

- the loop runs in a real OS thread (gevent's ThreadPool spawns native threads even when
  patched), built on the *original* selector (a loop on the patched one segfaulted) or on
  uvloop, which never touches Python's selectors;
- greenlets submit coroutines with `asyncio.run_coroutine_threadsafe` and sleep on a gevent
  Waiter; the coroutine's wrapper, still in the asyncio thread, queues its outcome and pokes
  one gevent async watcher (`hub.loop.async_()`, the only thread-safe way into the hub;
  gevent.event.AsyncResult is not safe across threads, gevent #1739), whose callback in the
  hub wakes the waiting greenlets;
- the request is timed *inside* the coroutine (the bridge's hand-over adds about 1 ms that
  must not count), and the caller fires locust's `events.request` from its greenlet.

Import this module only inside a locust process: it imports gevent.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import gevent
import gevent.monkey
from gevent.hub import Waiter, get_hub
from gevent.threadpool import ThreadPool

T = TypeVar("T")
LOOP_ENV = "COMMBENCH_LOCUST_LOOP"  # "uvloop" (default) or "asyncio"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


@dataclass(slots=True)
class Outcome:
    """A finished coroutine, timed in the asyncio thread."""

    value: Any
    error: BaseException | None
    service_ns: int  # from just before the first await to completion (CLOCK_MONOTONIC)
    done_epoch_ns: int  # wall clock at completion: the second it belongs to, on any machine


class _Slot:
    __slots__ = ("waiter", "outcome", "abandoned")

    def __init__(self, waiter: Waiter) -> None:
        self.waiter = waiter
        self.outcome: Outcome | None = None
        self.abandoned = False


def new_loop(kind: str | None = None) -> asyncio.AbstractEventLoop:
    """uvloop (libuv: no Python selector involved) or asyncio on the original selector."""
    kind = kind or os.environ.get(LOOP_ENV, "uvloop")
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    if kind != "asyncio":
        raise ValueError(f"{LOOP_ENV} must be 'uvloop' or 'asyncio', got {kind!r}")
    selector_cls = gevent.monkey.get_original("selectors", "DefaultSelector")
    return asyncio.SelectorEventLoop(selector_cls())


class AsyncBridge:
    """The process's asyncio loop and the way greenlets await coroutines on it."""

    def __init__(self, loop_kind: str | None = None) -> None:
        self.loop_kind = loop_kind or os.environ.get(LOOP_ENV, "uvloop")
        self.loop: asyncio.AbstractEventLoop | None = None
        self._pool: ThreadPool | None = None
        self._done: collections.deque[_Slot] = collections.deque()
        self._watcher: Any = None
        self.calls = 0

    # -- lifecycle (called from the gevent side) ------------------------------------------

    def start(self) -> AsyncBridge:
        if self.loop is not None:
            return self
        hub = get_hub()
        self._watcher = hub.loop.async_()
        self._watcher.start(self._wake)
        self.loop = new_loop(self.loop_kind)
        self._pool = ThreadPool(1)
        self._pool.spawn(self._run_loop, self.loop)
        # The first call proves the loop runs (and fails loudly if it does not).
        self.call(asyncio.sleep(0), timeout=START_TIMEOUT_S)
        return self

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        """Cancel what still runs, stop the loop and join its thread."""
        loop, self.loop = self.loop, None
        if loop is None:
            return

        async def cancel_all() -> None:
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self._submit_raw(loop, cancel_all()).result(STOP_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        if self._pool is not None:
            self._pool.join()
            self._pool.kill()
            self._pool = None
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher.close()
            self._watcher = None

    # -- calls ----------------------------------------------------------------------------

    def call(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        """Run `coro` on the loop and return its value (or raise its exception) in this
        greenlet. Only this greenlet waits; the others keep running."""
        out = self.timed(coro, timeout)
        if out.error is not None:
            raise out.error
        return out.value  # type: ignore[no-any-return]

    def timed(self, coro: Awaitable[Any], timeout: float | None = None) -> Outcome:
        """Like `call`, but returns the Outcome (value or error, with its timing) and never
        raises the coroutine's exception. If this greenlet is killed (locust stopping a user),
        the coroutine is cancelled."""
        loop = self.loop
        if loop is None:
            raise RuntimeError("the asyncio bridge is not running")
        slot = _Slot(Waiter())
        fut = self._submit_raw(loop, self._wrap(coro, slot))
        self.calls += 1
        try:
            if timeout is None:
                slot.waiter.get()
            else:
                with gevent.Timeout(timeout):
                    slot.waiter.get()
        except BaseException:
            slot.abandoned = True
            fut.cancel()
            raise
        assert slot.outcome is not None
        return slot.outcome

    @staticmethod
    def _submit_raw(loop: asyncio.AbstractEventLoop, coro: Awaitable[Any]) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, loop)  # type: ignore[arg-type]

    async def _wrap(self, coro: Awaitable[Any], slot: _Slot) -> None:
        """In the asyncio thread: time the call, keep its outcome, wake the greenlet."""
        mono = time.monotonic_ns
        t0 = mono()
        try:
            value, error = await coro, None
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the greenlet, raised or recorded there
            value, error = None, exc
        t1 = mono()
        slot.outcome = Outcome(value, error, t1 - t0, time.time_ns())
        self._done.append(slot)
        self._watcher.send()  # thread-safe; several sends may wake the hub once

    def _wake(self) -> None:
        """In the hub: wake every greenlet whose call finished."""
        done = self._done
        while done:
            slot = done.popleft()
            if not slot.abandoned:
                slot.waiter.switch(None)


_bridge: AsyncBridge | None = None


def get_bridge() -> AsyncBridge:
    """The process's one bridge, started on first use."""
    global _bridge
    if _bridge is None:
        _bridge = AsyncBridge().start()
    return _bridge


def stop_bridge() -> None:
    global _bridge
    if _bridge is not None:
        _bridge.stop()
        _bridge = None


def run_sync(fn: Callable[[], Awaitable[T]]) -> T:
    """Run one coroutine function on the process's bridge from a greenlet."""
    return get_bridge().call(fn())
