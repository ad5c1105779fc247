"""Resilience policies as scenario data: the `[policies]` table, applied by a chain edge
(REST, gRPC) on its calls to payment and inventory. Every part is off unless given, and
they combine freely:

    [policies]
    name = "timeouts+retries+breaker"  # how results name this set (default: what is on)
    timeout = "300ms"       # per attempt; the deadline travels downstream (gRPC deadline,
                            # REST x-commbench-deadline), which drops work past it
    bulkhead = 16           # concurrent calls per downstream; more fail fast (shed)
    shed = 256              # the edge's own concurrency limit (uvicorn limit_concurrency,
                            # grpc maximum_concurrent_rpcs)
    [policies.retries]
    kind = "exponential"    # none | fixed | exponential (full jitter)
    max_attempts = 3        # the first attempt included
    base = "20ms"           # fixed: the wait; exponential: the first step's cap
    cap = "1s"              # exponential: the largest wait
    budget = 0.2            # retries at most this fraction of a downstream's calls (left
                            # out: unbounded)
    budget_window = "10s"   # over this sliding window
    [policies.breaker]
    failure_rate = 0.5      # opens when this share of the last `window` calls failed
    window = 20
    min_calls = 10
    open_for = "1s"         # then half-open: `probes` calls let through
    probes = 2              # all succeed: closed; one fails: open again

A Policies value is whole and named, so a later run can hold several and swap them per
target run (the variants of issue 10). The edge receives it as JSON with the same keys
(`to_wire`, `commbench serve --policies`, read by targets/policy/config.py).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError, model_validator
from pydantic_core import PydanticKnownError

from harness.errors import UserError
from harness.scenario.errors import Help, problem, problems
from harness.scenario.types import duration_type

DURATION_HELP_TEXT = 'a duration such as "300ms", "2s" or a number of seconds'
MAX_TIMEOUT_S = 60.0
MAX_OPEN_S = 3600.0
MAX_CONCURRENCY = 100_000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")

AttemptTimeout = duration_type(positive=True, maximum=MAX_TIMEOUT_S)
Wait = duration_type(positive=True, maximum=MAX_TIMEOUT_S)
Window = duration_type(positive=True, maximum=MAX_OPEN_S)
# The conformance gate sends 40 creates at once (harness/stage/conformance.py
# CONCURRENT_CREATES): a bound below that would fail the gate before anything is measured.
# uvicorn also counts the gate client's connections against its limit, hence the margin.
MIN_BULKHEAD = 40
MIN_SHED = 48
Bulkhead = Annotated[int, Field(ge=MIN_BULKHEAD, le=MAX_CONCURRENCY)]
Shed = Annotated[int, Field(ge=MIN_SHED, le=MAX_CONCURRENCY)]
GATE = "(the conformance gate sends 40 creates at once)"


def _name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise PydanticKnownError("string_pattern_mismatch", {"pattern": _NAME.pattern})
    return value


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RetryPolicy(_Table):
    """[policies.retries]: failed calls without an answer are sent again (all steps are
    idempotent per order id)."""

    kind: Annotated[Literal["none", "fixed", "exponential"], Help(
        "none: no retry; fixed: the same wait each time; exponential: a random wait up to "
        "base × 2^n, capped (full jitter)", '"none", "fixed" or "exponential"')] = "exponential"
    max_attempts: Annotated[int, Field(ge=1, le=10), Help(
        "Attempts per call, the first included", "an integer from 1 to 10")] = 3
    base_s: Annotated[Wait, Help("fixed: the wait; exponential: the first step's cap",
                                 f"{DURATION_HELP_TEXT}, above zero and at most 60s"),
                      Field(alias="base")] = 0.02
    cap_s: Annotated[Wait, Help("exponential: the largest wait",
                                f"{DURATION_HELP_TEXT}, above zero and at most 60s"),
                     Field(alias="cap")] = 1.0
    budget: Annotated[float | None, Field(ge=0, le=1, allow_inf_nan=False), Help(
        "Retries at most this fraction of calls over the budget window (left out: unbounded)",
        "a number from 0 to 1")] = None
    budget_window_s: Annotated[Window, Help("The retry budget's sliding window",
                                            f"{DURATION_HELP_TEXT}, above zero and at most 1h"),
                               Field(alias="budget_window")] = 10.0

    @model_validator(mode="after")
    def _cap_above_base(self) -> RetryPolicy:
        if self.kind == "exponential" and self.cap_s < self.base_s:
            raise problem(f"cap must be at least base ({self.base_s:g} s), got {self.cap_s:g} s")
        return self


class BreakerPolicy(_Table):
    """[policies.breaker]: a circuit breaker per downstream."""

    failure_rate: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False), Help(
        "Opens when at least this share of the window's calls failed",
        "a number above 0 and at most 1")] = 0.5
    window: Annotated[int, Field(ge=1, le=10_000), Help(
        "The last calls judged", "an integer from 1 to 10,000")] = 20
    min_calls: Annotated[int, Field(ge=1, le=10_000), Help(
        "No judgement on fewer calls than this", "an integer from 1 to 10,000")] = 10
    open_s: Annotated[Window, Help("How long it stays open before letting probes through",
                                   f"{DURATION_HELP_TEXT}, above zero and at most 1h"),
                      Field(alias="open_for")] = 1.0
    probes: Annotated[int, Field(ge=1, le=100), Help(
        "Half-open: calls let through; all must succeed to close", "an integer from 1 to 100")] = 2

    @model_validator(mode="after")
    def _min_within_window(self) -> BreakerPolicy:
        if self.min_calls > self.window:
            raise problem(f"min_calls must be at most window ({self.window}), got {self.min_calls}")
        return self


class Policies(_Table):
    """[policies]: resilience policies on the chain's synchronous hops (REST, gRPC)."""

    name: Annotated[str, PlainValidator(_name), Help(
        "How results name this set of policies (default: the policies that are on)",
        "1 to 64 letters, digits, '.', '_', '+' or '-'")] = ""
    timeout_s: Annotated[AttemptTimeout | None, Help(
        "Per-attempt timeout of each downstream call; its deadline travels downstream",
        f"{DURATION_HELP_TEXT}, above zero and at most 60s"), Field(alias="timeout")] = None
    retries: Annotated[RetryPolicy | None, Help("Retries", "a table ([policies.retries])")] = None
    breaker: Annotated[BreakerPolicy | None, Help(
        "A circuit breaker per downstream", "a table ([policies.breaker])")] = None
    bulkhead: Annotated[Bulkhead | None, Help(
        "Concurrent calls per downstream; more fail fast as shed",
        f"an integer from {MIN_BULKHEAD} {GATE} to {MAX_CONCURRENCY:,}")] = None
    shed: Annotated[Shed | None, Help(
        "The edge's concurrency limit (uvicorn limit_concurrency, grpc "
        "maximum_concurrent_rpcs)", f"an integer from {MIN_SHED} {GATE} to "
        f"{MAX_CONCURRENCY:,}")] = None

    @property
    def on(self) -> tuple[str, ...]:
        """The policies that are on, in a fixed order."""
        return tuple(k for k, v in (("timeouts", self.timeout_s), ("retries", self.retries),
                                    ("breaker", self.breaker), ("bulkhead", self.bulkhead),
                                    ("shed", self.shed)) if v is not None)

    @property
    def label(self) -> str:
        return self.name or "+".join(self.on) or "none"

    def to_wire(self) -> str:
        """The JSON the edge reads (targets/policy/config.py): this table's own keys, so
        `commbench serve --policies` takes the same; "" when nothing is on."""
        if not self.on:
            return ""
        table = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return json.dumps({**table, "name": self.label}, separators=(",", ":"))


def policies_option(text: str) -> str:
    """`commbench serve --policies` (the [policies] table as JSON) → the edge's wire JSON;
    a one-line UserError naming the key otherwise."""
    if not text:
        return ""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise UserError(f"--policies: not JSON ({exc}); give the [policies] table as a JSON "
                        'object, e.g. \'{"timeout": "300ms"}\'') from None
    try:
        return Policies.model_validate(raw).to_wire()
    except ValidationError as exc:
        raise UserError("; ".join(problems(exc, Policies, "--policies"))) from None
