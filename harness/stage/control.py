"""The harness's client of a service's fault control channel (targets/control.py): switches
delay and errors on a running service, synchronously and outside the measured path.

    set_faults(path, delay_s=0.3, jitter_s=0.05)   # → {"delay_s": 0.3, ...}, once in effect
    set_faults(path)                               # clears every fault

Standard library only, so any part of the harness (or a script) can use it.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from harness.errors import UserError

MAX_ANSWER = 4096
MAX_QUERY_ANSWER = 1 << 20  # a policy query's answer lists up to 200 breaker state changes


def set_faults(path: str, *, delay_s: float = 0, jitter_s: float = 0, error_fraction: float = 0,
               crash: bool = False, timeout: float = 2.0) -> dict[str, float]:
    """Set the service's faults (any left out are cleared); the state the service answers."""
    reply = exchange(path, {"delay_s": delay_s, "jitter_s": jitter_s,
                            "error_fraction": error_fraction, "crash": int(crash)},
                     timeout=timeout)
    return dict(reply["state"])


def query_policies(path: str, events_from: int = 0, *, timeout: float = 0.5) -> dict[str, Any]:
    """The service's resilience-policy counters and breaker state changes numbered
    `events_from` or later (targets/policy/events.py); UserError when it does not answer."""
    return exchange(path, {"query": "policies", "events_from": events_from}, timeout=timeout,
                    limit=MAX_QUERY_ANSWER)


def query_gauges(path: str, *, timeout: float = 0.5) -> dict[str, int]:
    """What the service holds right now (targets.control.GAUGES); UserError when it does not
    answer."""
    return dict(exchange(path, {"query": "gauges"}, timeout=timeout)["gauges"])


def exchange(path: str, request: dict[str, Any], *, timeout: float = 2.0,
             limit: int = MAX_ANSWER) -> dict[str, Any]:
    """Send one control line, return the whole answer (`state`, and `injected`: the errors
    injected so far). UserError, one line, when the service does not answer or refuses."""
    deadline = time.monotonic() + timeout
    line = json.dumps(request).encode() + b"\n"
    buf = b""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(line)
            while b"\n" not in buf and len(buf) < limit:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
    except TimeoutError:
        raise UserError(f"the fault control socket {path} did not answer within {timeout:g} s") from None
    except OSError as exc:
        raise UserError(f"cannot reach the fault control socket {path}: "
                        f"{exc.strerror or type(exc).__name__}") from None
    try:
        reply = json.loads(buf.split(b"\n", 1)[0])
    except ValueError:
        raise UserError(f"the fault control socket {path} answered {buf[:100]!r}, not a JSON line") from None
    if not isinstance(reply, dict) or not reply.get("ok"):
        reason = reply.get("error", reply) if isinstance(reply, dict) else reply
        raise UserError(f"the fault control socket {path} refused {request}: {reason}")
    return reply
