"""The order flow's own tables (topology "chain"): each target's books after the run, as
reconciliation read them from the services' stores, and the CPU every service of the
topology spent per request; and, for every run with faults on any topology, the cascade
figures at the edge. Read from run.json's target rows; nothing is recomputed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reports.loader import Run

SERVICES = ("order", "payment", "inventory", "notification", "broker")


@dataclass
class FlowTables:
    books_columns: list[str]
    books: list[tuple[str, list[str]]]
    cost_columns: list[str]
    cost: list[tuple[str, list[str]]]
    problems: list[str] = field(default_factory=list)


@dataclass
class CascadeTable:
    """One row per fault per target run: what the edge showed (time to detect, to recover,
    goodput back). The single topology has faults too (a projector crash, a broker restart)."""
    columns: list[str]
    rows: list[tuple[str, list[str]]]


CASCADE = (("fault", "fault"), ("time to detect s", "time_to_detect_s"),
           ("time to recover s", "time_to_recover_s"), ("error rate during", "error_rate_during"),
           ("p99 during ms", "p99_during_ms"), ("baseline p99 ms", "baseline_p99_ms"),
           ("goodput before /s", "goodput_before_rps"), ("goodput during /s", "goodput_during_rps"),
           ("goodput back s", "goodput_back_s"))


def fault_spans(run: Run) -> list[tuple[float, float, str]]:
    """The scenario's fault windows, shaded on the time plots."""
    return [(float(f["at_s"]), float(f["at_s"]) + float(f["duration_s"]),
             f"{f['service']} {f['kind']}" if f["service"] != f["kind"] else "broker stopped")
            for f in run.scenario.get("faults") or []]


def flow_tables(run: Run) -> FlowTables | None:
    rows = [t for t in run.context.get("targets", []) if t.get("topology") == "chain"]
    if not rows:
        return None
    books, cost, problems = [], [], []
    for t in rows:
        label = f"{t['name']} r{t.get('repetition', 1)}"
        rec: dict[str, Any] = t.get("reconciliation") or {}
        load = rec.get("load_by_status") or {}
        stuck = sum((rec.get("stuck") or {}).values())
        books.append((label, [
            str(sum(load.values())) if load else "–",
            str(load.get("confirmed", 0)), str(load.get("cancelled", 0)),
            str(load.get("rejected", 0)), str(stuck),
            str(rec.get("orders", "–")),
            f"{rec.get('charges', '–')} / {rec.get('refunds', '–')}",
            str(rec.get("double_charges", "–")),
            _num(rec.get("downstream_steps_per_order")),
            "yes" if rec.get("clean") else "no" if rec else "not reconciled",
            _num(rec.get("drain_s")),
        ]))
        problems += [f"{label}: {p}" for p in rec.get("problems") or []]
        services: dict[str, Any] = t.get("services") or {}
        known = [v for v in services.values() if v is not None]
        cost.append((label, [_num(services.get(s)) for s in SERVICES]
                     + [_num(sum(known)) if known else "–"]))
    return FlowTables(
        ["load orders", "confirmed", "cancelled", "rejected", "stuck", "all orders",
         "charges / refunds", "double charges", "downstream steps per order", "books balance",
         "drain s"], books,
        [*SERVICES, "total"], cost, problems)


def cascade_table(run: Run) -> CascadeTable | None:
    rows: list[tuple[str, list[str]]] = []
    for t in run.context.get("targets", []):
        label = f"{t['name']} r{t.get('repetition', 1)}"
        amplification = _num((t.get("policies") or {}).get("amplification"))
        for row in t.get("cascade") or []:
            rows.append((label, [_rate(row.get(k)) if k == "error_rate_during"
                                 else str(row.get(k)) if k == "fault"
                                 else "never" if row.get(k) is None and k.startswith("time")
                                 else "stayed down" if k == "goodput_back_s" and k in row
                                 and row[k] is None and row.get("goodput_before_rps")
                                 else _num(row.get(k)) for _, k in CASCADE] + [amplification]))
    if not rows:
        return None
    return CascadeTable([*(c for c, _ in CASCADE), "retry amplification"], rows)


def _rate(v: object) -> str:
    return "–" if v is None else f"{float(v):.1%}"  # type: ignore[arg-type]


def _num(v: object) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return f"{v:,}" if isinstance(v, int) else str(v)
