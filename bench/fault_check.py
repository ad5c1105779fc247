"""What an inactive fault switch costs on each request's path (prints figures; not a test).

The handlers guard it with `if faults.active:` (gRPC and queue: `self.faults.active`), a
plain attribute; this measures that check against an empty statement, against a property
doing the same test, and against awaiting `before()` unconditionally (a coroutine per
request), which is what the guard avoids. Best of several repeats, ns per request.

Run: .venv/bin/python -m bench.fault_check [-n 2000000]
"""

from __future__ import annotations

import argparse
import timeit

from targets.control import FaultSwitch


class _PropertySwitch:
    """The alternative: `active` as a property computed on each read."""

    def __init__(self) -> None:
        self.delay_s = self.jitter_s = self.error_fraction = 0.0

    @property
    def active(self) -> bool:
        return self.delay_s > 0 or self.jitter_s > 0 or self.error_fraction > 0


class _Handler:
    def __init__(self) -> None:
        self.faults = FaultSwitch()


def _await_before(switch: FaultSwitch) -> None:
    coro = switch.before()
    try:
        coro.send(None)
    except StopIteration:
        pass


CASES = {
    "nothing (baseline)": "pass",
    "if faults.active": "if f.active: pass",
    "if self.faults.active": "if h.faults.active: pass",
    "property: if faults.active": "if p.active: pass",
    "await faults.before() unguarded": "before(f)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2_000_000, help="checks per repeat")
    args = parser.parse_args()
    env = {"F": FaultSwitch, "H": _Handler, "P": _PropertySwitch, "B": _await_before}
    setup = "f, h, p, before = F(), H(), P(), B"  # locals of the timed function, as in a handler
    base = 0.0
    for name, stmt in CASES.items():
        best = min(timeit.repeat(stmt, setup, globals=env, number=args.n, repeat=7)) / args.n * 1e9
        base = base or best
        print(f"{name:34} {best:7.1f} ns   (+{best - base:5.1f} ns over the baseline)")


if __name__ == "__main__":
    main()
