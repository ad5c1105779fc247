"""Service-level objectives as scenario data: the `[slo]` table, one line of clauses per
operation, checked against every target run's summary at the end of `commbench run`:

    [slo]
    all = "p99 < 50ms, errors < 1%"
    create = "p99.9 < 200ms, rps > 100"

Metrics: the latency percentiles `p50`, `p90`, `p99`, `p99.9` and `max` (from the intended
start, as summary.csv), `errors` (the error rate, "1%" or 0.01) and `rps` (successful
requests per second). Latencies and errors take `<`, rps takes `>`. A breach makes the run
exit 3 with a line naming it, so CI can gate on it; the verdicts are in run.json (`slo`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

from harness.scenario.types import parse_duration

OPERATIONS = ("get", "list", "create", "create_accepted", "noop", "all")
# metric → (summary.csv column, the comparison it takes, its unit)
METRICS: dict[str, tuple[str, str, str]] = {
    "p50": ("latency_p50_ms", "<", "ms"), "p90": ("latency_p90_ms", "<", "ms"),
    "p99": ("latency_p99_ms", "<", "ms"), "p99.9": ("latency_p999_ms", "<", "ms"),
    "max": ("latency_max_ms", "<", "ms"), "errors": ("error_rate", "<", ""),
    "rps": ("throughput_rps", ">", "req/s"),
}
CLAUSE_HELP = ('clauses such as "p99 < 50ms, errors < 1%, rps > 100" (p50, p90, p99, p99.9 '
               "and max take a duration; errors a percentage or a fraction; rps a number)")
_CLAUSE = re.compile(r"^\s*(?P<metric>[a-z0-9.]+)\s*(?P<op>[<>])\s*(?P<value>[^\s].*?)\s*$")


@dataclass(frozen=True)
class Clause:
    """One objective: `metric op limit`, the limit in the summary column's unit."""

    metric: str
    op: str
    limit: float

    @property
    def column(self) -> str:
        return METRICS[self.metric][0]

    def holds(self, value: float) -> bool:
        return value < self.limit if self.op == "<" else value > self.limit

    def __str__(self) -> str:
        """As a file writes it, so it reads back the same."""
        unit = "%" if self.metric == "errors" else "ms" if METRICS[self.metric][2] == "ms" else ""
        limit = self.limit * 100 if self.metric == "errors" else self.limit
        return f"{self.metric} {self.op} {limit:g}{unit}"


def parse_clauses(text: object) -> tuple[Clause, ...]:
    """`"p99 < 50ms, errors < 1%"` → clauses; ValueError naming the clause that is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"must be {CLAUSE_HELP}")
    out = []
    for part in text.split(","):
        m = _CLAUSE.match(part)
        if not m or m["metric"] not in METRICS:
            raise ValueError(f"{part.strip()!r} is not a clause: use {CLAUSE_HELP}")
        metric, op, value = m["metric"], m["op"], m["value"]
        if op != METRICS[metric][1]:
            raise ValueError(f"{part.strip()!r}: {metric} takes {METRICS[metric][1]!r}")
        out.append(Clause(metric, op, _limit(metric, value, part.strip())))
    return tuple(out)


def _limit(metric: str, value: str, clause: str) -> float:
    if metric == "errors":
        number = value[:-1] if value.endswith("%") else value
        try:
            limit = float(number) / (100 if value.endswith("%") else 1)
        except ValueError:
            limit = -1.0
        if not 0 < limit <= 1:
            raise ValueError(f"{clause!r}: errors takes a percentage above 0 and at most 100% "
                             "(or a fraction above 0 and at most 1)")
        return limit
    if metric == "rps":
        try:
            limit = float(value)
        except ValueError:
            limit = -1.0
        if limit <= 0:
            raise ValueError(f"{clause!r}: rps takes a positive number of requests per second")
        return limit
    seconds = parse_duration(value) if not _bare_number(value) else None
    if seconds is None or seconds <= 0:
        raise ValueError(f'{clause!r}: {metric} takes a duration with its unit, such as "50ms"')
    return seconds * 1000.0


def _bare_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def check(slo: dict[str, tuple[Clause, ...]], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One verdict per (summary row, clause) of the operations the SLO names: value, limit
    and whether it held. A figure that was not measured (no successful request) fails."""
    verdicts = []
    for row in rows:
        clauses = slo.get(str(row.get("operation")), ())
        for clause in clauses:
            value = row.get(clause.column)
            held = value is not None and clause.holds(float(value))
            verdicts.append({"target": row["target"], "repetition": row["repetition"],
                             "operation": row["operation"], "objective": str(clause),
                             "value": value, "held": held})
    return verdicts


def describe_breach(v: dict[str, Any]) -> str:
    value = "not measured" if v["value"] is None else f"{float(v['value']):.4g}"
    return (f"{v['target']} r{v['repetition']} {v['operation']}: {v['objective']} "
            f"does not hold (measured {value})")


def _table(value: Any) -> dict[str, tuple[Clause, ...]]:
    from harness.scenario.errors import got, problem

    if isinstance(value, dict) and all(isinstance(v, tuple) for v in value.values()):
        if all(isinstance(c, Clause) for v in value.values() for c in v):
            return value  # already parsed (a model copy)
    if not isinstance(value, dict):
        raise problem(f"must be a table of operation = \"clauses\", got {got(value)}")
    out = {}
    for op, text in value.items():
        if op not in OPERATIONS:
            raise problem(f"{op}: not an operation; use one of {', '.join(OPERATIONS)}")
        try:
            out[op] = parse_clauses(text)
        except ValueError as exc:
            raise problem(f"{op}: {exc}") from None
    return out


# The [slo] table as the file writes it (operation = "clauses"); written to run.json alike.
SloTable = Annotated[
    dict[str, tuple[Clause, ...]], PlainValidator(_table),
    PlainSerializer(lambda d: {op: ", ".join(map(str, cs)) for op, cs in d.items()}),
    WithJsonSchema({"type": "object", "additionalProperties": False,
                    "properties": {op: {"type": "string"} for op in OPERATIONS}})]
