"""After the load on a chain topology: let in-flight orders finish (a saga's events may still
be queued), then account for every order from the services' own stores.

The drain is bounded: it ends when no order is mid-flow, or after DRAIN_S, and how long it
took is recorded. Whatever is still mid-flow then is reported stuck, never hidden.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from targets.flow.reconcile import Reconciliation, reconcile_folder

DRAIN_S = 10.0
POLL_S = 0.2  # pacing of reads of the stores while the drain lasts


def settle(folder: Path, load: str, drain_s: float = DRAIN_S) -> dict[str, Any]:
    """The reconciliation of one target run, as run.json records it; `load` is the prefix of
    the request ids the generator sent (the gate's orders are accounted, not in its counts)."""
    start = time.monotonic()
    while True:
        rec = reconcile_folder(folder, load)
        waited = time.monotonic() - start
        if not any(rec.stuck.values()) or waited >= drain_s:
            return summary(rec, waited)
        time.sleep(POLL_S)


def summary(rec: Reconciliation, drain_s: float) -> dict[str, Any]:
    """Counts, not id lists (those stay in the stores, under data/), plus one line per
    problem. `downstream_steps_per_order` counts each charge attempt, refund, reservation
    attempt and release a downstream service recorded, per order of the flow."""
    steps = (sum(rec.payment_states.values()) + rec.refunds
             + sum(rec.reservation_states.values()) + rec.releases)
    return {
        "clean": rec.clean,
        "drain_s": round(drain_s, 3),
        "orders": rec.orders,
        "by_status": rec.by_status,
        "load_by_status": rec.load_by_status,
        "stuck": {stage: len(ids) for stage, ids in rec.stuck.items()},
        "charges": rec.charges, "refunds": rec.refunds,
        "reservations": rec.reservations, "releases": rec.releases,
        "double_charges": len(rec.double_charges),
        "confirmed_not_once": len(rec.confirmed_not_once),
        "cancelled_with_leftovers": len(rec.cancelled_with_leftovers),
        "rejected_with_leftovers": len(rec.rejected_with_leftovers),
        "unknown_orders": len(rec.unknown_orders),
        "stock_mismatches": len(rec.stock_mismatches),
        "notifications_missing": None if rec.notifications_missing is None
        else len(rec.notifications_missing),
        "notifications_duplicated": None if rec.notifications_duplicated is None
        else len(rec.notifications_duplicated),
        "downstream_steps_per_order": round(steps / rec.orders, 3) if rec.orders else None,
        "problems": rec.problems(),
    }
