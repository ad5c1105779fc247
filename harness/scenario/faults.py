"""Faults as scenario data: `[[faults]]` tables (and the repeatable `--fault` option), each a
service of the topology, a kind, when it starts in the measured window and how long it lasts.

    [[faults]]
    service = "payment"      # order, payment, inventory, notification (the topology's names)
    kind = "pause"           # kill | pause | delay | errors | crash | broker | projector
    at = "10s"               # from the start of the measured window
    duration = "5s"
    delay = "2s"             # delay: added to each request the service handles
    jitter = "200ms"         # delay: ± uniformly spread
    fraction = 0.2           # errors: the share of requests that fail

On the command line: `--fault payment:pause@10s+5s`, `--fault payment:delay=2s,jitter=200ms@10s+10s`,
`--fault payment:errors=0.2@5s+10s`.

`kind = "broker"` (with service = "broker") stops the message broker
(RabbitMQ's stop_app: every connection is closed, durable queues and persistent messages
are kept) and starts it again when the fault ends: `--fault broker@10s+5s`. It stops only a
broker the run started itself, so a run with it uses a private broker; a transport without a
broker carries on untouched (the fault is recorded as not applying to it).

`kind = "projector"` (with service = "order") crashes the eventsourced order service's
projector (its task and the events queued to it are dropped) and restarts it when the fault
ends, to catch up from the log: `--fault order:projector@5s+5s`. Other transports have no
projector: the fault is recorded as not applying to them.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.errors import UserError
from harness.scenario.errors import Help, problem, problems
from harness.scenario.types import duration_type, parse_duration

KINDS = ("kill", "pause", "delay", "errors", "crash", "broker", "projector")
SERVICES = ("order", "payment", "inventory", "notification", "broker")
BROKER = "broker"
MAX_BROKER_DOWN_S = 15.0  # a queue service gives up on a broker away 20 s (targets/queue/server.py)
MAX_FAULT_S = 24 * 3600.0
MAX_DELAY_S = 60.0
DURATION_HELP = 'a duration such as "10s", "500ms", "2m" or a number of seconds'

At = duration_type(positive=False, maximum=MAX_FAULT_S)
Lasting = duration_type(positive=True, maximum=MAX_FAULT_S)
Delay = duration_type(positive=True, maximum=MAX_DELAY_S)
Jitter = duration_type(positive=False, maximum=MAX_DELAY_S)


class FaultSpec(BaseModel):
    """One fault on a timeline: what happens to which service, when, for how long."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    service: Annotated[Literal[SERVICES], Help(  # type: ignore[valid-type]
        "The service the fault hits (order is the edge clients call)",
        " or ".join(f'"{s}"' for s in SERVICES))]
    kind: Annotated[Literal[KINDS], Help(  # type: ignore[valid-type]
        "kill: SIGKILL, restarted when the fault ends; pause: SIGSTOP, then SIGCONT; delay: "
        "added latency; errors: a share of requests fail with the transport's own error; "
        "crash: the service dies between a side effect and its answer or ack (payment's "
        "charge, a saga step), restarted when the fault ends; broker: the message broker is "
        "stopped, then started (service \"broker\"); projector: the eventsourced order "
        "service's projector crashes, restarted when the fault ends (service \"order\")",
        " or ".join(f'"{k}"' for k in KINDS))]
    at_s: Annotated[At, Help("When the fault starts, from the start of the measured window",
                             f"{DURATION_HELP}, zero or more"), Field(alias="at")]
    duration_s: Annotated[Lasting, Help("How long the fault lasts",
                                        f"{DURATION_HELP}, greater than zero"),
                          Field(alias="duration")]
    delay_s: Annotated[Delay | None, Help("delay: latency added to each request",
                                          f"{DURATION_HELP}, greater than zero and at most 60s"),
                       Field(alias="delay")] = None
    jitter_s: Annotated[Jitter, Help("delay: ± spread of the added latency",
                                     f"{DURATION_HELP}, zero or more and at most 60s"),
                        Field(alias="jitter")] = 0.0
    fraction: Annotated[float | None, Field(gt=0, le=1, allow_inf_nan=False), Help(
        "errors: the share of requests that fail", "a number above 0 and at most 1")] = None

    @model_validator(mode="after")
    def _parameters_fit_the_kind(self) -> FaultSpec:
        if (self.kind == BROKER) != (self.service == BROKER):
            raise problem('kind = "broker" goes with service = "broker" (the broker is not one '
                          "of the order flow's services), and only with it")
        if self.kind == "projector" and self.service != "order":
            raise problem('kind = "projector" goes with service = "order" (the projector runs '
                          "in the eventsourced order service)")
        if self.kind == BROKER and self.duration_s > MAX_BROKER_DOWN_S:
            raise problem(f'kind = "broker" lasts at most {MAX_BROKER_DOWN_S:g}s (a queue '
                          "service longer without its broker gives up)")
        if self.kind == "delay" and self.delay_s is None:
            raise problem('kind = "delay" needs delay (the added latency, e.g. "2s")')
        if self.kind == "errors" and self.fraction is None:
            raise problem('kind = "errors" needs fraction (the share that fails, e.g. 0.2)')
        if self.kind != "delay" and (self.delay_s is not None or self.jitter_s):
            raise problem('delay and jitter apply only to kind = "delay"')
        if self.kind != "errors" and self.fraction is not None:
            raise problem('fraction applies only to kind = "errors"')
        return self

    @property
    def end_s(self) -> float:
        return self.at_s + self.duration_s

    def describe(self) -> str:
        if self.kind == "delay":
            what = f"delay {self.delay_s or 0:g} s ± {self.jitter_s:g} s"
        elif self.kind == "errors":
            what = f"errors {self.fraction or 0:.0%}"
        elif self.kind == BROKER:
            what = "stopped"
        elif self.kind == "projector":
            what = "projector crashed"
        else:
            what = self.kind
        return f"{self.service}: {what} from {self.at_s:g} s for {self.duration_s:g} s"


_OPTION = re.compile(r"^(?P<service>[a-z]+)(?::(?P<kind>[a-z]+))?(?:=(?P<params>[^@]*))?"
                     r"@(?P<at>[^+]+)\+(?P<duration>.+)$")


def parse_fault_option(text: str) -> FaultSpec:
    """`SERVICE:KIND[=PARAMS]@AT+DURATION` → FaultSpec; a UserError that shows the form."""
    form = ("--fault takes SERVICE:KIND[=PARAMS]@AT+DURATION, e.g. payment:pause@10s+5s, "
            "payment:delay=2s,jitter=200ms@10s+10s, payment:errors=0.2@5s+10s or broker@10s+5s")
    m = _OPTION.match(text.strip())
    if not m or (m["kind"] is None and m["service"] != BROKER):
        raise UserError(f"{form}; got {text!r}")
    raw: dict[str, object] = {"service": m["service"], "kind": m["kind"] or BROKER, "at": m["at"],
                              "duration": m["duration"]}
    for n, part in enumerate(filter(None, (m["params"] or "").split(","))):
        key, sep, value = part.partition("=")
        if not sep:  # the first parameter may be given bare: delay=2s, errors=0.2
            key, value = {"delay": "delay", "errors": "fraction"}.get(m["kind"], key), key
            if n:
                raise UserError(f"{form}; got {text!r}")
        raw[key] = float(value) if key == "fraction" and _number(value) else value
    for key in ("at", "duration", "delay", "jitter"):
        if isinstance(raw.get(key), str) and parse_duration(raw[key]) is None:
            number = _number(str(raw[key]))
            raw[key] = number if number is not None else raw[key]
    return parse_fault(raw, f"--fault {text}")


def parse_fault(raw: dict[str, object], where: str) -> FaultSpec:
    """One fault table → FaultSpec; a UserError with every problem, `where: key: ...`."""
    try:
        return FaultSpec.model_validate(raw)
    except ValidationError as exc:
        raise UserError("; ".join(p.replace(": : ", ": ") for p in problems(exc, FaultSpec, where))) \
            from None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def fault_problems(f: FaultSpec, topology: str, duration_s: float) -> list[str]:
    """A fault must hit a service the topology has, within the measured window."""
    out = []
    if f.service not in ("order", "broker") and topology != "chain":
        out.append(f'service "{f.service}" exists only with topology = "chain"')
    if f.end_s > duration_s + 1e-9:
        out.append(f"must end within the measured window ({duration_s:g} s): it ends at "
                   f"{f.end_s:g} s")
    return out
