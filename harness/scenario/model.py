"""Scenario files: TOML data → frozen, fully validated pydantic models.

Every problem is reported as `<file>: <key>: <what would be valid>, got <value>`, all of them
at once, and unknown keys are errors, so a typo never silently falls back to a default. The
models are the schema: each field's Help is both its description in `scenario_schema()` (for
editors) and the message when a value is refused. Attribute names are the harness's
(`duration_s`); the file's keys are their aliases (`duration`).
"""

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)

from harness.errors import UserError
from harness.scenario.errors import Help, at, given, got, problem, refuse, validated
from harness.scenario.faults import FaultSpec, fault_problems
from harness.scenario.policies import Policies
from harness.scenario.slo import SloTable
from harness.scenario.types import (
    Name,
    Target,
    TargetRef,
    distinct,
    duration_type,
    non_empty,
    parse_target,
    schema_edit,
)
from targets.core.seed import SeedSpec
from targets.core.validation import MAX_LIST_LIMIT
from targets.registry import TRANSPORTS

OPERATIONS = ("get", "list", "create", "noop")
DEFAULT_IN_FLIGHT = 256
DEFAULT_TIMEOUT_S = 10.0
# Upper bounds: past these a run would hang while seeding, exhaust memory or never end.
MAX_ORDERS = 10_000_000  # data.users × data.orders_per_user: the seeded set is built in memory
MAX_RATE = 1_000_000.0  # requests/s
MAX_DURATION_S = 24 * 3600.0  # duration, warm-up, each stage
MAX_WAIT_S = 3600.0  # timeout and think time: the histograms clamp values above one hour
MAX_USERS = 100_000  # closed-loop virtual users (one task each)
MAX_IN_FLIGHT = 1_000_000
MAX_REPETITIONS = 1000
MAX_VARIANTS = 8  # policy variants per run: each multiplies the run's length

DURATION_HELP = 'a duration such as "10s", "500ms", "2m" or a number of seconds'
UP_TO_24H = "at most 24h"
UP_TO_1H = "at most 1h"
RATE_HELP = f"a positive number (requests/s) of at most {MAX_RATE:,.0f}"
POSITIVE_24H = f"{DURATION_HELP}, greater than zero and {UP_TO_24H}"
OPEN_ONLY = ("rate", "stages", "arrival", "in_flight")  # field names
CLOSED_ONLY = ("users", "think_time_s")
USERS_MISSING = 'is required for model = "closed" (virtual users)'


class ScenarioError(UserError):
    """One or more problems in a scenario file, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


Span = duration_type(positive=True, maximum=MAX_DURATION_S)  # duration, a stage's duration
Warmup = duration_type(positive=False, maximum=MAX_DURATION_S)
Timeout = duration_type(positive=True, maximum=MAX_WAIT_S)
Think = duration_type(positive=False, maximum=MAX_WAIT_S)
Rate = Annotated[float, Field(gt=0, le=MAX_RATE, allow_inf_nan=False)]
Weight = Annotated[float, Field(ge=0, allow_inf_nan=False)]
WEIGHT = "a weight: a number of zero or more"


def _within_a_day(stages: tuple["Stage", ...]) -> tuple["Stage", ...]:
    total = sum(s.duration_s for s in stages)
    if total > MAX_DURATION_S:
        raise problem(f"the stages' durations must add up to {UP_TO_24H}, got {got(f'{total:g} s')}")
    return stages


def _variant_problems(sc: "Scenario") -> list[Any]:
    """Variants replace [policies], on the chain, each with a name of its own."""
    if not sc.variants:
        return []
    out = []
    if sc.policies.on or sc.policies.name:
        out.append(at(("variants",), "replace [policies]: give one or the other"))
    if sc.topology != "chain":
        out.append(at(("variants",), 'apply to the chain\'s hops: set topology = "chain"'))
    labels = [v.label for v in sc.variants]
    out += [at(("variants", n), f"is named {label!r} like an earlier one: give it its own name")
            for n, label in enumerate(labels) if label in labels[:n]]
    return out


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Stage(_Table):
    """One step of an open-loop load: a rate held for a duration."""

    rate: Annotated[Rate, Help("Requests per second over all processes", RATE_HELP)]
    duration_s: Annotated[Span, Help("How long this rate is held", POSITIVE_24H),
                          Field(alias="duration")]

    def __init__(self, *args: float, **data: Any) -> None:
        """`Stage(rate, duration_s)`, as well as the keys of the file."""
        data.update(zip(("rate", "duration"), args, strict=False))
        if "duration_s" in data:
            data["duration"] = data.pop("duration_s")
        super().__init__(**data)


class DataSpec(_Table):
    """[data]: the data set seeded into every target before the run."""

    users: Annotated[int, Field(ge=1, le=MAX_ORDERS), Help(
        "Users in the seeded data set", f"a positive integer of at most {MAX_ORDERS:,}")] = 100
    orders_per_user: Annotated[int, Field(ge=1, le=MAX_ORDERS), Help(
        "Orders seeded per user", f"a positive integer of at most {MAX_ORDERS:,}")] = 10
    store: Annotated[Literal["memory", "sqlite"], Help(
        "Where the targets keep orders (sqlite: durable, WAL)", '"memory" or "sqlite"')] = "memory"
    seed: Annotated[int, Field(ge=0), Help(
        "Seed of the data and of the request stream", "a non-negative integer")] = 1

    @model_validator(mode="after")
    def _fits_in_memory(self) -> "DataSpec":
        if self.users * self.orders_per_user > MAX_ORDERS:
            raise problem(f"users × orders_per_user must be at most {MAX_ORDERS:,} orders (the "
                          "seeded data set is built in memory before the run), got "
                          f"{self.users:,} × {self.orders_per_user:,}")
        return self

    def seed_spec(self) -> SeedSpec:
        return SeedSpec(users=self.users, orders_per_user=self.orders_per_user, seed=self.seed)


class LoadSpec(_Table):
    """[load]: open loop (requests at a rate, or in stages) or closed loop (virtual users)."""

    model: Annotated[Literal["open", "closed"], Help(
        "open: requests at a rate whatever the responses; closed: virtual users that each wait "
        "for their response", '"open" or "closed"')] = "open"
    # The rate of an open-loop load in one stage (load.rate, or a single stage), None otherwise;
    # as load.rate is written to run.json as that stage, the field itself is not.
    rate: Annotated[Rate | None, Help("Open loop: requests per second over all processes, for "
                                      "the whole duration (or give stages)", RATE_HELP)] = Field(
        None, exclude=True, json_schema_extra=schema_edit(default=None))
    stages: Annotated[tuple[Stage, ...], Field(strict=False), AfterValidator(non_empty),
                      AfterValidator(_within_a_day), Help(
        "Open loop: piecewise-constant rates that make up the measured window (instead of rate)",
        "a non-empty list of {rate, duration} tables",
        item="a table {rate = ..., duration = ...}")] = Field(
        (), json_schema_extra=schema_edit(default=None, minItems=1))
    arrival: Annotated[Literal["uniform", "poisson"], Help(
        "Open loop: how requests are spaced within a second", '"uniform" or "poisson"')] = "poisson"
    users: Annotated[int, Field(ge=1, le=MAX_USERS), Help(
        "Closed loop: virtual users over all processes",
        f"a positive integer (virtual users) of at most {MAX_USERS:,}",
        missing=USERS_MISSING)] = Field(
        0, json_schema_extra=schema_edit(default=None))
    think_time_s: Annotated[Think, Help(
        "Closed loop: pause of each user between a response and its next request",
        f"{DURATION_HELP}, zero or more and {UP_TO_1H}"), Field(alias="think_time")] = 0.0
    in_flight: Annotated[int, Field(ge=1, le=MAX_IN_FLIGHT), Help(
        "Open loop: bound on requests in flight per generator process",
        "a positive integer (requests in flight per process) of at most "
        f"{MAX_IN_FLIGHT:,}")] = DEFAULT_IN_FLIGHT
    timeout_s: Annotated[Timeout, Help(
        "Time after which a request counts as failed",
        f"{DURATION_HELP}, greater than zero and {UP_TO_1H}"), Field(alias="timeout")] = DEFAULT_TIMEOUT_S

    @model_validator(mode="wrap")
    @classmethod
    def _model_keys(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> "LoadSpec":
        """Keys of the other model are refused; open needs rate or stages, closed needs users."""
        if not isinstance(data, dict):
            return handler(data)
        keys = given(cls, data)
        alias = {f: info.alias or f for f, info in cls.model_fields.items()}
        model = data.get("model") if data.get("model") in ("open", "closed") else "open"
        other = "closed" if model == "open" else "open"
        skip = [f for f in (CLOSED_ONLY if model == "open" else OPEN_ONLY) if f in keys]
        rules = [at((alias[f],), f'applies only to model = "{other}"') for f in skip]
        if model == "closed" and "users" not in keys:
            rules.append(at(("users",), USERS_MISSING))
        elif model == "open" and {"rate", "stages"} <= keys:
            skip += ["rate", "stages"]
            rules.append(at(("rate",), "give either load.rate or load.stages, not both"))
        elif model == "open" and not {"rate", "stages"} & keys:
            rules.append(at(("rate",), 'is required for model = "open": a positive number '
                                       "(requests/s), or give load.stages"))
        spec: LoadSpec = validated("load", data, handler, rules, {alias[f] for f in skip})
        if spec.model == "open" and len(spec.stages) == 1:  # set in place: frozen to callers
            spec.__dict__["rate"] = spec.stages[0].rate   # only, and `LoadSpec(...)` keeps it
        return spec


class Operations(_Table):
    """[operations]: relative weights of the operations in the request stream."""

    get: Annotated[Weight, Help("Weight of looking up one order", WEIGHT)] = 0.0
    list: Annotated[Weight, Help("Weight of listing a user's recent orders", WEIGHT)] = 0.0
    create: Annotated[Weight, Help("Weight of creating an order", WEIGHT)] = 0.0
    noop: Annotated[Weight, Help(
        "Weight of an empty request answered with nothing: the transport's own floor, no "
        "order logic", WEIGHT)] = 0.0
    list_limit: Annotated[int, Field(ge=1, le=MAX_LIST_LIMIT), Help(
        "Orders a list asks for", f"an integer from 1 to {MAX_LIST_LIMIT}")] = 20

    @model_validator(mode="after")
    def _some_weight(self) -> "Operations":
        if not self.weights():
            raise problem("at least one of get, list, create, noop needs a weight above zero")
        return self

    def weights(self) -> dict[str, float]:
        return {op: getattr(self, op) for op in OPERATIONS if getattr(self, op) > 0}


class Scenario(_Table):
    """A commbench scenario: what to run against which targets, for how long, at what load."""

    model_config = ConfigDict(title="commbench scenario")

    name: Annotated[Name, Help("A short name, used for result folders", "a non-empty string",
                               missing="is required (a short name for result folders)")]
    description: Annotated[str, Help("What the scenario measures (commbench scenarios shows it)",
                                     "a string")] = ""
    targets: Annotated[tuple[Target, ...], Field(strict=False), AfterValidator(non_empty),
                       WrapValidator(distinct), Help(
        "Targets to run, each a transport optionally with a client variant",
        f"a non-empty list of targets ({', '.join(TRANSPORTS)}, "
        'optionally with a client such as "rest:httpx")')] = Field(
        default_factory=lambda: tuple(parse_target(t) for t in TRANSPORTS),
        json_schema_extra=schema_edit(default=list(TRANSPORTS), minItems=1))
    data: Annotated[DataSpec, Help("The data set seeded before the run", "a table ([data])")] = DataSpec()
    load: Annotated[LoadSpec, Help("How requests are offered", "a table ([load])")] = Field(
        default_factory=dict, validate_default=True)
    # None only while validating, when the stages give it: a Scenario always has a duration.
    duration_s: Annotated[Span, Help(
        "The measured window of each repetition, after the warm-up (left out when load.stages "
        "gives it)", POSITIVE_24H), Field(alias="duration")] = Field(
        None, json_schema_extra=schema_edit(default=None))
    warmup_s: Annotated[Warmup, Help(
        "Time before the measured window whose requests are not counted",
        f"{DURATION_HELP}, zero or more and {UP_TO_24H}"), Field(alias="warmup")] = 0.0
    repetitions: Annotated[int, Field(ge=1, le=MAX_REPETITIONS), Help(
        "Measured runs per target", f"an integer from 1 to {MAX_REPETITIONS}")] = 1
    operations: Annotated[Operations, Help(
        "The request mix", "a table ([operations])",
        missing="is required: weights for " + ", ".join(OPERATIONS))]
    topology: Annotated[Literal["single", "chain"], Help(
        "single: one order service; chain: the order service calls payment and inventory "
        "(REST, gRPC) or runs a saga with them over the broker (queue)",
        '"single" or "chain"')] = "single"
    read_your_writes: Annotated[bool, Help(
        "Look each created order up right after the create's answer and count the lookups "
        "that do not see it (read-your-writes violations): one extra lookup per create on "
        "every target, outside every latency and throughput figure", "true or false")] = False
    faults: Annotated[tuple[FaultSpec, ...], Field(strict=False), Help(
        "Faults injected during the measured window ([[faults]] tables)",
        "a list of [[faults]] tables", item="a table {service, kind, at, duration, ...}")] = ()
    policies: Annotated[Policies, Help(
        "Resilience policies on the chain's synchronous hops (REST, gRPC): timeout, retries, "
        "breaker, bulkhead, shed; all off unless given", "a table ([policies])")] = Policies()
    variants: Annotated[tuple[Policies, ...], Field(strict=False, max_length=MAX_VARIANTS), Help(
        "Policy variants measured side by side in one run, each on every target under the same "
        "faults, rotated like the targets ([[variants]] tables, each as [policies]; a result "
        'row is named <target>~<variant>, e.g. "rest~timeouts+retries")',
        f"a list of at most {MAX_VARIANTS} [[variants]] tables",
        item="a table {name, timeout, retries, breaker, bulkhead, shed}")] = ()
    slo: Annotated[SloTable, Help(
        "Objectives checked on every target run's summary; a breach exits 3 ([slo]: "
        'operation = "clauses", e.g. all = "p99 < 50ms, errors < 1%")',
        'a table of operation = "clauses"')] = Field(default_factory=dict)
    _path: str = PrivateAttr("")  # the file it was read from; not part of the scenario's value

    @model_validator(mode="wrap")
    @classmethod
    def _duration_and_stages(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> "Scenario":
        """The duration is given, or the sum of the stages; an open-loop rate is one stage."""
        load = data.get("load") if isinstance(data, dict) else None
        staged = isinstance(load, dict) and "stages" in load or \
            isinstance(load, LoadSpec) and bool(load.stages)
        rules = []
        if isinstance(data, dict) and "duration_s" not in given(cls, data) and not staged:
            rules.append(at(("duration",), f"is required: {DURATION_HELP}"))
        sc: Scenario = validated("scenario", data, handler, rules)
        ld, duration = sc.load, sc.duration_s
        if ld.stages:
            total = sum(s.duration_s for s in ld.stages)
            if duration is None:
                duration = total
            elif not math.isclose(total, duration):
                refuse("scenario", [at(("duration",), "must equal the sum of load.stages "
                                       f"durations ({total:g} s) or be left out, got "
                                       f"{got(duration)}", duration)])
        elif ld.model == "open" and ld.rate is not None:
            ld = ld.model_copy(update={"stages": (Stage(ld.rate, duration),)})
        sc.__dict__.update(load=ld, duration_s=duration)  # in place, as in LoadSpec
        if sc.topology == "chain":  # only transports that serve it; by default, all of those
            single = [n for n, t in enumerate(sc.targets) if not TRANSPORTS[t.transport].serves_chain]
            if single and isinstance(data, dict) and "targets" in given(cls, data):
                refuse("scenario", [at(("targets", n), f"{sc.targets[n].transport} does not serve "
                                                       "the chain topology") for n in single])
            sc.__dict__.update(targets=tuple(t for t in sc.targets
                                             if TRANSPORTS[t.transport].serves_chain))
        refuse_faults = [at(("faults", n), message) for n, f in enumerate(sc.faults)
                         for message in fault_problems(f, sc.topology, duration)]
        if sc.policies.on and sc.topology != "chain":
            refuse_faults.append(at(("policies",), 'apply to the chain\'s hops: set topology = '
                                    '"chain", or leave [policies] out'))
        refuse_faults += _variant_problems(sc)
        if refuse_faults:
            refuse("scenario", refuse_faults)
        weights = sc.operations.weights()
        unmeasured = [at(("slo", op), f"names an operation the mix does not have (weights: "
                                      f"{', '.join(weights)})")
                      for op in sc.slo if op != "all"
                      and (op if op != "create_accepted" else "create") not in weights]
        if unmeasured:
            refuse("scenario", unmeasured)
        return sc

    @property
    def path(self) -> str:
        return self._path

    def __eq__(self, other: object) -> bool:  # as the dataclass was: the path is not compared
        return type(other) is Scenario and self.__dict__ == other.__dict__

    def to_dict(self) -> dict[str, Any]:
        """Every key explicit, as written to run.json."""
        d = self.model_dump()
        d["targets"] = list(d["targets"])
        d["load"]["stages"] = list(d["load"]["stages"])
        return d

    def with_overrides(
        self,
        *,
        targets: tuple[TargetRef, ...] | None = None,
        rate: float | None = None,
        duration_s: float | None = None,
        repetitions: int | None = None,
        faults: tuple[FaultSpec, ...] = (),
    ) -> "Scenario":
        """Apply command-line overrides; a combination that makes no sense is a UserError."""
        s = self
        if targets is not None:
            single = [t.transport for t in targets
                      if s.topology == "chain" and not TRANSPORTS[t.transport].serves_chain]
            if single:
                raise UserError(f"--targets: {single[0]} does not serve the chain topology")
            s = s.model_copy(update={"targets": targets})
        if rate is not None:
            if s.load.model != "open":
                raise UserError("--rate applies to open-loop scenarios; this one is closed")
            if len(s.load.stages) > 1:
                raise UserError("--rate cannot replace the stages of a staged scenario")
            if not 0 < rate <= MAX_RATE:
                raise UserError(f"--rate must be a positive number (requests/s) of at most "
                                f"{MAX_RATE:,.0f}, got {rate:g}")
            load = {"stages": (Stage(float(rate), s.duration_s),), "rate": float(rate)}
            s = s.model_copy(update={"load": s.load.model_copy(update=load)})
        if duration_s is not None:
            if not 0 < duration_s <= MAX_DURATION_S:
                raise UserError(f"--duration must be positive and at most 24h, got "
                                f"{duration_s:g} s")
            if len(s.load.stages) > 1:
                raise UserError("--duration cannot be used with a staged scenario")
            stages = tuple(Stage(st.rate, float(duration_s)) for st in s.load.stages)
            s = s.model_copy(update={"duration_s": float(duration_s),
                                     "load": s.load.model_copy(update={"stages": stages})})
        if repetitions is not None:
            if not 1 <= repetitions <= MAX_REPETITIONS:
                raise UserError(f"--repetitions must be from 1 to {MAX_REPETITIONS}, "
                                f"got {repetitions}")
            s = s.model_copy(update={"repetitions": repetitions})
        for f in faults:  # --fault: added to the scenario's own, held to the same rules
            problems = fault_problems(f, s.topology, s.duration_s)
            if problems:
                raise UserError(f"--fault {f.describe()}: {'; '.join(problems)}")
        return s.model_copy(update={"faults": s.faults + faults}) if faults else s
