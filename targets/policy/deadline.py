"""Deadline propagation. A caller with a per-attempt timeout tells the downstream when its
answer stops being useful; the downstream drops work whose deadline has passed instead of
doing it (and counts `deadline_expired`), so a backlog built while it was slow or frozen is
not worked off for callers that left long ago. Compensations (refund, release) carry no
deadline (targets/policy/guard.py): a refund is owed whether or not anyone waits for it.

gRPC carries the deadline itself (the call's timeout; the servicer reads
`context.time_remaining()`). REST carries it in the `x-commbench-deadline` header: absolute
Unix time in seconds, so time spent queued before the server read the request counts too.
Absolute time needs the clocks of caller and callee to agree: they share one host here.
"""

from __future__ import annotations

import time

from targets.core.errors import OrderError
from targets.policy.events import EVENTS

HEADER = "x-commbench-deadline"


class DeadlineExpired(OrderError):
    """The caller's deadline passed before the work started: dropped, not done."""

    kind = "deadline_expired"


def header_value(deadline: float) -> str:
    return f"{deadline:.6f}"


def check_header(value: str | None) -> None:
    """Raise DeadlineExpired (counted) when a REST request's deadline has passed."""
    if not value:
        return
    try:
        deadline = float(value)
    except ValueError:
        return  # not ours to judge: a malformed header carries no deadline
    if time.time() >= deadline:
        expired()


def check_remaining(remaining_s: float | None) -> None:
    """Raise DeadlineExpired (counted) when a gRPC call's time is up."""
    if remaining_s is not None and remaining_s <= 0:
        expired()


def expired() -> None:
    EVENTS.add("deadline_expired")
    raise DeadlineExpired("the caller's deadline passed before the work started: dropped")
