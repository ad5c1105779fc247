"""The eventsourced server's own lines on its control socket (targets/control.py HANDLERS),
so the harness reads and steers it outside the measured path:

    {"query": "eventsourced"}                     → {"figures": {...}}   once a second
    {"command": "projector", "running": false}    → the projector crashes (the fault)
    {"command": "projector", "running": true}     → it restarts and catches up from the log
    {"query": "projection_check", "drain_s": 10}  → {"check": {...}}   after the load

`figures`: the interval's append latency and projection lag (EsMetrics.take), the events
appended and applied so far, the backlog between them (in events, and the age of its
oldest event), whether the projector runs, the replay on start, and the outbox's rows not
yet confirmed by the broker (None: served without the outbox). `check`: once the projector's
backlog and the outbox's have drained (at most `drain_s` for both), the read model against a
fresh replay of the log (projection.check_against_log), and the outbox rows still pending.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from targets.control import HANDLERS
from targets.eventsourced.projection import check_against_log
from targets.eventsourced.service import EventSourcedOrders

MAX_DRAIN_S = 60.0
DRAIN_POLL_S = 0.01


def register(orders: EventSourcedOrders) -> None:
    """Answer this server's queries and commands on its control socket (call it when there
    is one: its figures are recorded from now on)."""
    projector, model, relay = orders.projector, orders.model, orders.relay
    orders.metrics.recording = True

    async def figures(_: dict[str, Any]) -> dict[str, Any]:
        return {"figures": {**orders.metrics.take(), "appended": projector.appended,
                            "applied": model.applied, "lag_events": projector.lag,
                            "behind_ms": round(projector.behind_ns() / 1e6, 3),
                            "running": projector.running, "crashes": projector.crashes,
                            "duplicates_dropped": model.duplicates,
                            "outbox_backlog": None if relay is None else relay.backlog}}

    async def switch(request: dict[str, Any]) -> dict[str, Any]:
        running = request.get("running")
        if not isinstance(running, bool) or set(request) != {"command", "running"}:
            raise ValueError('expected {"command": "projector", "running": true or false}')
        if running:
            projector.start(catch_up=True)
        elif projector.running:
            await projector.crash()
        return {"running": projector.running, "lag_events": projector.lag}

    async def check(request: dict[str, Any]) -> dict[str, Any]:
        drain = request.get("drain_s", 10.0)
        if isinstance(drain, bool) or not isinstance(drain, int | float) \
                or not 0 <= drain <= MAX_DRAIN_S:
            raise ValueError(f"drain_s must be a number of seconds from 0 to {MAX_DRAIN_S:g}")
        started = time.monotonic()
        while (projector.lag or (relay is not None and relay.backlog)) \
                and time.monotonic() - started < drain:
            await asyncio.sleep(DRAIN_POLL_S)  # both run on this loop: yield to them
        waited = time.monotonic() - started
        result = await check_against_log(model, orders.log)
        outbox = None if relay is None else {"backlog": relay.backlog,
                                             "published": relay.published}
        return {"check": {**result, "lag_events": projector.lag, "drained_in_s": round(waited, 3),
                          "projector_crashes": projector.crashes, "outbox": outbox}}

    HANDLERS.update(eventsourced=figures, projector=switch, projection_check=check)
