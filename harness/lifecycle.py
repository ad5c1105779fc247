"""Process hygiene shared by everything that starts processes: children die with their
parent (even a SIGKILLed one), and clean-up is not cut short by a second Ctrl-C."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Iterator, Sequence

_PR_SET_PDEATHSIG = 1


def child_setup(cpus: Sequence[int] = (), death_signal: int = signal.SIGKILL) -> None:
    """Run in a new child (preexec_fn, or first thing in a worker): ask the kernel to send
    `death_signal` when the parent dies, and pin to `cpus` when given."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, death_signal)
    if cpus:
        os.sched_setaffinity(0, set(cpus))


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """While stopping things: a second Ctrl-C or SIGTERM must not leave processes behind."""
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
