"""Generator processes: `--processes N` splits the schedule over N OS processes (spawn
context, each with its own uvloop loop and client), which stream their closed seconds to
the parent; the parent merges them exactly (harness.load.recorder.Merger).

Workers ignore Ctrl-C and a hang-up (a terminal sends both to the whole foreground group):
the parent alone decides when they stop, and a parent-death signal ends them if the parent
dies. A broker that closes a queue client's connection costs one line on stderr, not the
AMQP libraries' tracebacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection as mpc
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.lifecycle import amqp_logs_one_line, child_setup, ignore_terminal_signals
from harness.load.engine import Engine, EngineConfig
from harness.load.heap import settle_heap

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0

Message = tuple[Any, ...]  # ("ready"|"second"|"done"|"error", index, payload)


@dataclass(frozen=True)
class WorkerSpec:
    transport: str
    variant: str
    url: str
    engine: EngineConfig
    cpus: tuple[int, ...] = ()


def worker_main(conn: mpc.Connection, spec: WorkerSpec) -> None:
    """Entry point of a generator process."""
    ignore_terminal_signals()
    child_setup(spec.cpus)
    import uvloop

    index = spec.engine.index
    amqp_logs_one_line(f"load process {index}")
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_worker(conn, spec))
    except Exception as exc:  # reported to the parent, which marks the target failed
        with contextlib.suppress(OSError):
            conn.send(("error", index, f"{type(exc).__name__}: {exc}\n"
                       f"{traceback.format_exc(limit=3)}"))
    finally:
        conn.close()


async def _worker(conn: mpc.Connection, spec: WorkerSpec) -> None:
    from targets.registry import get_transport

    index = spec.engine.index
    factory = get_transport(spec.transport).client_factory(spec.variant)
    client = await factory(spec.url, timeout=spec.engine.scenario.load.timeout_s)
    loop = asyncio.get_running_loop()
    try:
        settle_heap()
        conn.send(("ready", index, None))
        msg = await loop.run_in_executor(None, conn.recv)
        if msg[0] != "start":
            return
        engine = Engine(client, spec.engine, lambda rec: conn.send(("second", index, rec)))
        engine_task = asyncio.ensure_future(engine.run(msg[1]))

        def watch_stop() -> None:
            with contextlib.suppress(EOFError, OSError):
                if conn.recv()[0] == "stop":
                    loop.call_soon_threadsafe(engine_task.cancel)

        # A daemon thread, not the executor: the executor is joined at loop shutdown and
        # this one may still be blocked in recv when the run ends normally.
        threading.Thread(target=watch_stop, name="stop-watch", daemon=True).start()
        with contextlib.suppress(asyncio.CancelledError):
            await engine_task
        conn.send(("done", index, engine.stats))  # also when stopped: what it counted so far
    finally:
        await client.close()


class WorkerPool:
    """The generator processes of one target run."""

    def __init__(self, specs: Sequence[WorkerSpec]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conns: list[mpc.Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self.done: set[int] = set()
        for spec in specs:
            parent, child = ctx.Pipe(duplex=True)
            proc = ctx.Process(target=worker_main, args=(child, spec),
                               name=f"commbench-load-{spec.engine.index}", daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Block until every worker has connected its client; raise RuntimeError if one fails."""
        waiting = set(range(len(self.conns)))
        deadline = time.monotonic() + timeout
        while waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"load processes not ready within {timeout:.0f} s")
            for msg in self.poll(remaining):
                if msg[0] == "ready":
                    waiting.discard(msg[1])
                elif msg[0] == "error":
                    raise RuntimeError(f"load process {msg[1]}: {msg[2].splitlines()[0]}")

    def start(self, t0_ns: int) -> None:
        for conn in self.conns:
            conn.send(("start", t0_ns))

    def poll(self, timeout: float) -> list[Message]:
        """Messages available within `timeout` seconds; a worker that vanished yields an
        ("error", index, ...) message once."""
        live = {c: i for i, c in enumerate(self.conns) if i not in self.done}
        if not live:
            return []
        out: list[Message] = []
        for conn in mpc.wait(list(live), timeout):
            i = live[conn]  # type: ignore[index]
            try:
                while conn.poll():  # type: ignore[union-attr]
                    msg = conn.recv()  # type: ignore[union-attr]
                    out.append(msg)
                    if msg[0] in ("done", "error"):
                        self.done.add(i)
                        break
            except (EOFError, OSError):
                self.done.add(i)
                code = self.procs[i].exitcode
                out.append(("error", i, f"load process exited unexpectedly (code {code})"))
        return out

    @property
    def finished(self) -> bool:
        return len(self.done) == len(self.conns)

    def stop(self) -> None:
        """Ask every worker to stop; they flush what they measured and report done."""
        for i, conn in enumerate(self.conns):
            if i not in self.done:
                with contextlib.suppress(OSError, ValueError):
                    conn.send(("stop",))

    def close(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """End every process (on every exit path)."""
        self.stop()
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()
                proc.join(1)
        for conn in self.conns:
            conn.close()

