"""The value types of scenario files: durations, targets and names, each validated from the
file's value and described in the JSON Schema as the file writes it ("10s", "rest:httpx",
"rest@granian").

`harness.scenario` re-exports the public ones (TargetRef, parse_target, parse_duration).
"""

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, ValidatorFunctionWrapHandler, WithJsonSchema
from pydantic_core import PydanticKnownError

from harness.scenario.errors import at, got, problem, refuse
from targets.registry import TRANSPORTS

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class TargetRef:
    """A transport, the client variant that drives it and the server variant that answers
    (`rest`, `rest:httpx`, `rest@granian`, `rest:httpx@granian`). `server` is None for the
    transport's default server, so existing specs keep their names and equality."""

    transport: str
    variant: str
    server: str | None = None

    @property
    def name(self) -> str:
        """The row name in results: each variant is appended only when it is not the default
        (`rest`, `rest-httpx`, `rest-granian`, `rest-httpx-granian`)."""
        default = TRANSPORTS[self.transport].default_client
        name = self.transport if self.variant == default else f"{self.transport}-{self.variant}"
        return f"{name}-{self.server}" if self.server else name

    @property
    def probe(self) -> bool:
        """Driven by a probe client (a minimal client to measure the server), not a
        production one: results label the row so."""
        return TRANSPORTS[self.transport].is_probe(self.variant)

    @property
    def spec(self) -> str:
        spec = f"{self.transport}:{self.variant}"
        return f"{spec}@{self.server}" if self.server else spec

    @property
    def server_name(self) -> str:
        """The server variant, the default one named."""
        return self.server or TRANSPORTS[self.transport].default_server


def parse_duration(value: object) -> float | None:
    """Seconds from "10s", "500ms", "2m", "1h" or a number of seconds; None if not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNIT_S[m.group(2)]
    return None


def parse_target(spec: str) -> TargetRef:
    """`TRANSPORT[:CLIENT][@SERVER]` (`rest`, `rest:httpx`, `rest@granian`) → TargetRef;
    KeyError with the valid choices otherwise. `@` names the server variant, `:` the client
    variant, so the two never collide."""
    rest, at, server = spec.strip().partition("@")
    transport, _, variant = rest.partition(":")
    t = TRANSPORTS.get(transport)
    if t is None:
        raise KeyError(f"unknown target {transport!r}; known: {', '.join(TRANSPORTS)}")
    variant = variant or t.default_client
    if variant not in t.clients:
        raise KeyError(f"{transport} has no client {variant!r}; choose one of: "
                       f"{', '.join(t.clients)}")
    if at and server not in t.servers:
        raise KeyError(f"{transport} has no server {server!r}; choose one of: "
                       f"{', '.join(t.servers)}")
    return TargetRef(transport, variant, None if server == t.default_server else server or None)


def target_specs() -> list[str]:
    """Every target a scenario may name (the JSON Schema's enum)."""
    return [f"{name}{client}{server}" for name, t in TRANSPORTS.items()
            for server in ("", *(f"@{s}" for s in t.servers))
            for client in ("", *(f":{c}" for c in t.clients))]


def duration_type(*, positive: bool, maximum: float) -> Any:
    """Seconds, from a duration string or a number: above zero (or from zero) and at most
    `maximum`. A refused value is reported with the field's Help."""
    def seconds(value: Any) -> float:
        s = parse_duration(value)
        if s is None or s < 0 or (positive and s == 0) or s > maximum:
            raise PydanticKnownError("float_parsing")
        return s
    number = {"type": "number", "exclusiveMinimum" if positive else "minimum": 0, "maximum": maximum}
    return Annotated[float, PlainValidator(seconds), WithJsonSchema(
        {"anyOf": [{"type": "string", "pattern": _DURATION.pattern}, number]})]


def _target(value: Any) -> TargetRef:
    if isinstance(value, TargetRef):
        return value
    if not isinstance(value, str):
        raise problem(f"must be a string, got {got(value)}")
    try:
        return parse_target(value)
    except KeyError as exc:
        raise problem(exc.args[0]) from None


def distinct(value: Any, handler: ValidatorFunctionWrapHandler) -> tuple[TargetRef, ...]:
    """A wrap validator for the list of targets: one listed twice is refused."""
    refs = handler(value)
    twice = [at((n,), f"is listed twice, got {got(value[n])}", value[n])
             for n, ref in enumerate(refs) if ref in refs[:n]]
    if twice:
        refuse("targets", twice)
    return refs


# A target as the file writes it ("rest", "rest:httpx", "rest@granian"); written to run.json
# as its spec.
Target = Annotated[TargetRef, PlainValidator(_target), PlainSerializer(lambda t: t.spec),
                   WithJsonSchema({"type": "string", "enum": target_specs()})]


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PydanticKnownError("string_too_short", {"min_length": 1})
    if not _NAME.fullmatch(value):
        raise problem(f"may hold only letters, digits, '.', '_' and '-', got {got(value)}")
    return value


# A scenario's name: it names result folders.
Name = Annotated[str, PlainValidator(_name), WithJsonSchema(
    {"type": "string", "minLength": 1, "pattern": f"^{_NAME.pattern}$"})]


def non_empty(value: Any) -> Any:
    """An after-validator for a list that must not be empty; unlike `min_length` it stays quiet
    when the list is empty only because its items were refused."""
    if not value:
        raise PydanticKnownError("too_short", {"field_type": "List", "min_length": 1,
                                               "actual_length": 0})
    return value


def schema_edit(**changes: Any) -> Callable[[dict[str, Any]], None]:
    """A field's JSON Schema edited (json_schema_extra): keys set, or dropped where None."""
    def edit(schema: dict[str, Any]) -> None:
        for key, value in changes.items():
            if value is None:
                schema.pop(key, None)
            else:
                schema[key] = value
    return edit
