"""The in-service fault control channel, for failure-cascade experiments.

Every service process (any role, any transport) can carry a FaultSwitch: a delay (with
uniform ± jitter) added to each request it handles, and a fraction of those requests failing
with InjectedFault, which each transport answers with its own error. The harness switches
them at run time over a Unix-domain socket beside the service, outside the measured path:

    {"delay_s": 2.0, "jitter_s": 0.1, "error_fraction": 0.0}   → one JSON object per line
    {"ok": true, "state": {...}, "injected": 12}                ← once the state is in effect
    {"ok": false, "error": "..."}                              ← a malformed line

Missing keys reset to 0, so `{}` clears every fault; `injected` counts the errors injected
since the service started. A line with `query` asks instead of setting, changing nothing:

    {"query": "policies", "events_from": 0}
    {"ok": true, "counters": {"retries": 3, ...}, "transitions": [{"seq": 0, ...}, ...]}

the resilience policies' cumulative counters and breaker state changes numbered
`events_from` or later, at most MAX_TRANSITIONS_PER_ANSWER of them (targets/policy/events.py).

    {"query": "gauges"}
    {"ok": true, "gauges": {"unacked:<queue>": 3, ...}}

what the process holds right now, as it counts it (GAUGES: a queue service's messages
delivered to it and not yet acknowledged, per queue).

    {"query": NAME, ...} or {"command": NAME, ...}   with NAME in HANDLERS

what a service adds for itself (the eventsourced server: its figures, its projector's crash
and restart, the read model checked against the log), answered by its own async handler.

Handlers guard the switch with `if faults.active:` — `active` is a
plain attribute kept in step with the state, so an inactive switch costs one attribute check
on each request's path, no call and no coroutine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import random
import socket
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from targets.core.errors import OrderError
from targets.policy.events import EVENTS
from targets.serving import ServeError

STATE_KEYS = ("delay_s", "jitter_s", "error_fraction", "crash")
CRASH_EXIT = 137  # as if SIGKILLed: the process dies between its side effect and its answer
MAX_LINE = 4096  # a control line is a few dozen bytes; anything longer is refused
MAX_TRANSITIONS_PER_ANSWER = 200  # a longer history is read over several queries
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes on Linux, NUL included

log = logging.getLogger("commbench.control")


class InjectedFault(OrderError):
    """A request failed on purpose (the fault switch's error fraction). An OrderError, so the
    handlers that already map domain errors to the transport's error carry it too: REST 500
    with the JSON error body, gRPC INTERNAL, an error reply on a queue RPC."""

    kind = "injected"


class FaultSwitch:
    """The faults in effect in this process. Assigning any state field updates `active`."""

    __slots__ = ("delay_s", "jitter_s", "error_fraction", "crash", "injected", "active")
    delay_s: float
    jitter_s: float
    error_fraction: float
    crash: float  # 1: the next handler to reach `after_effect` kills the process
    injected: int  # errors injected so far
    # True when any fault is set; read on every request, so a plain attribute, not a property.
    active: bool

    def __init__(self, delay_s: float = 0.0, jitter_s: float = 0.0,
                 error_fraction: float = 0.0, crash: float = 0.0) -> None:
        object.__setattr__(self, "injected", 0)
        self.set(delay_s, jitter_s, error_fraction, crash)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name in STATE_KEYS:
            object.__setattr__(self, "active", bool(
                getattr(self, "delay_s", 0) > 0 or getattr(self, "jitter_s", 0) > 0
                or getattr(self, "error_fraction", 0) > 0 or getattr(self, "crash", 0) > 0))

    def __repr__(self) -> str:
        return f"FaultSwitch({self.state()}, injected={self.injected})"

    def set(self, delay_s: float = 0.0, jitter_s: float = 0.0, error_fraction: float = 0.0,
            crash: float = 0.0) -> None:
        self.delay_s, self.jitter_s, self.error_fraction = delay_s, jitter_s, error_fraction
        self.crash = crash

    def state(self) -> dict[str, float]:
        return {"delay_s": self.delay_s, "jitter_s": self.jitter_s,
                "error_fraction": self.error_fraction, "crash": self.crash}

    def after_effect(self) -> None:
        """Call between a handler's side effect (the store written) and its answer or ack:
        with `crash` set, the process dies right there, the crash a saga must survive."""
        if self.crash:
            log.warning("crashing between a side effect and its answer (fault injected)")
            logging.shutdown()
            os._exit(CRASH_EXIT)

    async def before(self) -> None:
        """Await at the start of handling a request: the delay, then maybe InjectedFault."""
        if self.delay_s > 0 or self.jitter_s > 0:
            jitter = self.jitter_s
            await asyncio.sleep(max(0.0, self.delay_s + random.uniform(-jitter, jitter)))
        if self.error_fraction > 0 and random.random() < self.error_fraction:
            self.injected += 1
            raise InjectedFault("fault injected by the control channel")


def parse_state(line: bytes | str) -> dict[str, float]:
    """One control line → the full new state; ValueError with a one-line reason."""
    try:
        request = json.loads(line)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise ValueError(f"expected a JSON object with keys {', '.join(STATE_KEYS)}")
    unknown = sorted(set(request) - set(STATE_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; expected {', '.join(STATE_KEYS)}")
    state: dict[str, float] = {}
    for key in STATE_KEYS:
        value = request.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{key} must be a finite number, got {value!r}")
        if value < 0 or (key in ("error_fraction", "crash") and value > 1):
            bounds = "between 0 and 1" if key in ("error_fraction", "crash") else "0 or more"
            raise ValueError(f"{key} must be {bounds}, got {value!r}")
        state[key] = float(value)
    return state


GAUGES: dict[str, int] = {}  # name → its value now, kept by the service (query "gauges")
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
HANDLERS: dict[str, Handler] = {}  # a service's own queries and commands, by name


async def respond(switch: FaultSwitch, line: bytes) -> dict[str, Any]:
    """The answer to one control line: a service's own handler when it names one (ValueError
    from it: refused), else `answer`."""
    try:
        request = json.loads(line)
    except ValueError:
        request = None
    if isinstance(request, dict):
        name = request.get("query", request.get("command"))
        if isinstance(name, str) and name in HANDLERS:
            try:
                return {"ok": True, **await HANDLERS[name](request)}
            except ValueError as exc:
                return {"ok": False, "error": str(exc)}
    return answer(switch, line)


def query(line: bytes | str) -> dict[str, Any] | None:
    """The answer to a query line; None when the line is not one (a fault state to set)."""
    try:
        request = json.loads(line)
    except ValueError:
        return None
    if not isinstance(request, dict) or "query" not in request:
        return None
    if request == {"query": "gauges"}:
        return {"ok": True, "gauges": dict(GAUGES)}
    if request["query"] != "policies" or set(request) - {"query", "events_from"}:
        return {"ok": False, "error": 'expected {"query": "policies", "events_from": N} or '
                                      '{"query": "gauges"}'}
    start = request.get("events_from", 0)
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        return {"ok": False, "error": f"events_from must be an integer of 0 or more, got {start!r}"}
    snapshot = EVENTS.snapshot(start)
    snapshot["transitions"] = snapshot["transitions"][:MAX_TRANSITIONS_PER_ANSWER]
    return {"ok": True, **snapshot}


def answer(switch: FaultSwitch, line: bytes) -> dict[str, Any]:
    """Apply one control line to `switch` (or answer its query); the answer to send back."""
    asked = query(line)
    if asked is not None:
        return asked
    try:
        state = parse_state(line)
    except ValueError as exc:
        return {"ok": False, "error": str(exc)}
    if state != switch.state():
        log.warning("faults now %s", state)  # rare, and worth finding in the service's log
    switch.set(**state)
    return {"ok": True, "state": switch.state(), "injected": switch.injected}


async def _session(switch: FaultSwitch, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> None:
    """One control connection: a line in, a line out, until the client closes. Nothing here
    may end the service: every failure ends only this connection."""
    try:
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # longer than MAX_LINE: answer, then drop the connection
                writer.write(_line({"ok": False, "error": f"line longer than {MAX_LINE} bytes"}))
                await writer.drain()
                return
            if not line:
                return
            writer.write(_line(await respond(switch, line)))
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    except Exception:
        log.exception("fault control connection failed")
    finally:
        writer.close()


def _line(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode() + b"\n"


class _ControlServer(asyncio.AbstractServer):
    """The listening server, removing its socket file on close (asyncio does not before
    Python 3.13, uvloop not at all) — unless another process has replaced it since."""

    def __init__(self, server: asyncio.AbstractServer, path: str) -> None:
        self._server = server
        self._path = path
        self._inode = os.stat(path).st_ino

    def close(self) -> None:
        self._server.close()
        with contextlib.suppress(OSError):
            if os.stat(self._path).st_ino == self._inode:
                os.unlink(self._path)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._server.get_loop()

    def is_serving(self) -> bool:
        return self._server.is_serving()

    async def start_serving(self) -> None:
        await self._server.start_serving()

    async def serve_forever(self) -> None:
        await self._server.serve_forever()

    async def wait_closed(self) -> None:
        await self._server.wait_closed()


def _claim(path: str) -> None:
    """ServeError unless `path` can be bound: short enough, and free or a stale socket left by
    a process that died (removed here; a socket something still answers on is not)."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ServeError(f"--control {path}: a Unix socket path may have at most "
                         f"{MAX_SOCKET_PATH} bytes; choose a shorter one")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ServeError(f"--control {path}: exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # stale
        return
    finally:
        probe.close()
    raise ServeError(f"--control {path}: another process is serving on it")


async def serve_control(path: str, switch: FaultSwitch) -> asyncio.AbstractServer:
    """Serve the control protocol for `switch` on a Unix socket at `path` (owner-only)."""
    _claim(path)
    try:
        server = await asyncio.start_unix_server(
            lambda r, w: _session(switch, r, w), path=path, limit=MAX_LINE)
    except OSError as exc:
        raise ServeError(f"--control {path}: cannot listen: {exc.strerror or exc}") from None
    os.chmod(path, 0o600)
    return _ControlServer(server, path)


@contextlib.asynccontextmanager
async def controlled(path: str, switch: FaultSwitch) -> AsyncIterator[FaultSwitch]:
    """The control channel for the life of the block when `path` is set (ServeConfig.control);
    nothing at all when it is empty."""
    if not path:
        yield switch
        return
    server = await serve_control(path, switch)
    try:
        yield switch
    finally:
        server.close()
