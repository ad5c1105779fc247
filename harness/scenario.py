"""Scenario files: TOML data → typed, frozen, fully validated dataclasses.

Every problem is reported as `<file>: <key>: <what would be valid>, got <value>`, all of them
at once, and unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.errors import UserError
from targets.core.seed import SeedSpec
from targets.core.validation import MAX_LIST_LIMIT
from targets.registry import TRANSPORTS

OPERATIONS = ("get", "list", "create")
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
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class ScenarioError(UserError):
    """One or more problems in a scenario file, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class TargetRef:
    """A transport and the client variant that drives it (`rest` or `rest:httpx`)."""

    transport: str
    variant: str

    @property
    def name(self) -> str:
        """The row name in results: the variant is appended only when it is not the default."""
        default = TRANSPORTS[self.transport].default_client
        return self.transport if self.variant == default else f"{self.transport}-{self.variant}"

    @property
    def spec(self) -> str:
        return f"{self.transport}:{self.variant}"


@dataclass(frozen=True)
class Stage:
    rate: float  # requests/s over all processes
    duration_s: float


@dataclass(frozen=True)
class DataSpec:
    users: int = 100
    orders_per_user: int = 10
    store: str = "memory"  # "memory" | "sqlite"
    seed: int = 1

    def seed_spec(self) -> SeedSpec:
        return SeedSpec(users=self.users, orders_per_user=self.orders_per_user, seed=self.seed)


@dataclass(frozen=True)
class LoadSpec:
    model: str = "open"  # "open" | "closed"
    stages: tuple[Stage, ...] = ()  # open: the measured window as piecewise-constant rates
    arrival: str = "poisson"  # open: "uniform" | "poisson"
    users: int = 0  # closed: virtual users over all processes
    think_time_s: float = 0.0  # closed
    in_flight: int = DEFAULT_IN_FLIGHT  # open: bound per generator process
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def rate(self) -> float | None:
        """The single rate of an unstaged open-loop scenario (None otherwise)."""
        return self.stages[0].rate if self.model == "open" and len(self.stages) == 1 else None


@dataclass(frozen=True)
class Operations:
    get: float = 0.0
    list: float = 0.0
    create: float = 0.0
    list_limit: int = 20

    def weights(self) -> dict[str, float]:
        return {op: getattr(self, op) for op in OPERATIONS if getattr(self, op) > 0}


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    targets: tuple[TargetRef, ...]
    data: DataSpec
    load: LoadSpec
    duration_s: float
    warmup_s: float
    repetitions: int
    operations: Operations
    path: str = field(default="", compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Every key explicit, as written to run.json."""
        d = asdict(self)
        d["targets"] = [t.spec for t in self.targets]
        d["load"]["stages"] = [asdict(s) for s in self.load.stages]
        d.pop("path")
        return d

    def with_overrides(
        self,
        *,
        targets: tuple[TargetRef, ...] | None = None,
        rate: float | None = None,
        duration_s: float | None = None,
        repetitions: int | None = None,
    ) -> Scenario:
        """Apply command-line overrides; a combination that makes no sense is a UserError."""
        s = self
        if targets is not None:
            s = replace(s, targets=targets)
        if rate is not None:
            if s.load.model != "open":
                raise UserError("--rate applies to open-loop scenarios; this one is closed")
            if len(s.load.stages) > 1:
                raise UserError("--rate cannot replace the stages of a staged scenario")
            if not 0 < rate <= MAX_RATE:
                raise UserError(f"--rate must be a positive number (requests/s) of at most "
                                f"{MAX_RATE:,.0f}, got {rate:g}")
            s = replace(s, load=replace(s.load, stages=(Stage(rate, s.duration_s),)))
        if duration_s is not None:
            if not 0 < duration_s <= MAX_DURATION_S:
                raise UserError(f"--duration must be positive and at most 24h, got "
                                f"{duration_s:g} s")
            if len(s.load.stages) > 1:
                raise UserError("--duration cannot be used with a staged scenario")
            stages = tuple(Stage(st.rate, duration_s) for st in s.load.stages)
            s = replace(s, duration_s=duration_s, load=replace(s.load, stages=stages))
        if repetitions is not None:
            if not 1 <= repetitions <= MAX_REPETITIONS:
                raise UserError(f"--repetitions must be from 1 to {MAX_REPETITIONS}, "
                                f"got {repetitions}")
            s = replace(s, repetitions=repetitions)
        return s


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
    """`rest` or `rest:httpx` → TargetRef; KeyError with the valid choices otherwise."""
    transport, _, variant = spec.strip().partition(":")
    t = TRANSPORTS.get(transport)
    if t is None:
        raise KeyError(f"unknown target {transport!r}; known: {', '.join(TRANSPORTS)}")
    variant = variant or t.default_client
    if variant not in t.clients:
        raise KeyError(f"{transport} has no client {variant!r}; choose one of: "
                       f"{', '.join(t.clients)}")
    return TargetRef(transport, variant)


def _got(value: object) -> str:
    return json.dumps(value, default=str)


class _Reader:
    """Pulls typed values out of the TOML tree, collecting every problem."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.problems: list[str] = []

    def bad(self, key: str, valid: str, value: object = ..., *, got: bool = True) -> None:
        tail = f", got {_got(value)}" if got and value is not ... else ""
        self.problems.append(f"{self.where}: {key}: {valid}{tail}")

    def table(self, root: dict[str, Any], key: str) -> dict[str, Any]:
        value = root.get(key, {})
        if not isinstance(value, dict):
            self.bad(key, "must be a table ([" + key + "])", value)
            return {}
        return value

    def unknown(self, table: dict[str, Any], allowed: tuple[str, ...], prefix: str = "") -> None:
        for key in table:
            if key not in allowed:
                self.bad(prefix + key, f"unknown key; valid keys here: {', '.join(allowed)}",
                         got=False)

    def take(self, table: dict[str, Any], key: str, default: Any, prefix: str,
             check: Callable[[Any], Any], valid: str) -> Any:
        if key not in table:
            return default
        value = table[key]
        out = check(value)
        if out is None:
            self.bad(prefix + key, valid, value)
            return default
        return out


def _int(minimum: int, maximum: int | None = None) -> Callable[[Any], int | None]:
    def check(v: Any) -> int | None:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            return None
        if maximum is not None and v > maximum:
            return None
        return v
    return check


def _number(*, positive: bool, maximum: float | None = None) -> Callable[[Any], float | None]:
    def check(v: Any) -> float | None:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return None
        if v < 0 or (positive and v == 0) or (maximum is not None and v > maximum):
            return None
        return float(v)
    return check


def _duration(*, positive: bool, maximum: float = MAX_DURATION_S) -> Callable[[Any], float | None]:
    def check(v: Any) -> float | None:
        s = parse_duration(v)
        if s is None or s < 0 or (positive and s == 0) or s > maximum:
            return None
        return s
    return check


def _choice(*choices: str) -> Callable[[Any], str | None]:
    return lambda v: v if isinstance(v, str) and v in choices else None


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) and v.strip() else None


DURATION_HELP = 'a duration such as "10s", "500ms", "2m" or a number of seconds'
UP_TO_24H = "at most 24h"
UP_TO_1H = "at most 1h"
RATE_HELP = f"must be a positive number (requests/s) of at most {MAX_RATE:,.0f}"
TOP_KEYS = ("name", "description", "targets", "data", "load", "duration", "warmup",
            "repetitions", "operations")
DATA_KEYS = ("users", "orders_per_user", "store", "seed")
LOAD_KEYS = ("model", "rate", "stages", "arrival", "users", "think_time", "in_flight", "timeout")
OPEN_ONLY = ("rate", "stages", "arrival", "in_flight")
CLOSED_ONLY = ("users", "think_time")
OPS_KEYS = (*OPERATIONS, "list_limit")


def parse_scenario(raw: dict[str, Any], where: str) -> Scenario:
    """Validate a decoded TOML document; raise ScenarioError listing every problem."""
    r = _Reader(where)
    r.unknown(raw, TOP_KEYS)

    name = r.take(raw, "name", "", "", _text, "must be a non-empty string")
    if "name" not in raw:
        r.bad("name", "is required (a short name for result folders)", got=False)
    elif name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        r.bad("name", "may hold only letters, digits, '.', '_' and '-'", name)
        name = ""
    description = r.take(raw, "description", "", "", lambda v: v if isinstance(v, str) else None,
                         "must be a string")

    targets: list[TargetRef] = []
    raw_targets = raw.get("targets", list(TRANSPORTS))
    if not isinstance(raw_targets, list) or not raw_targets:
        r.bad("targets", f"must be a non-empty list of targets ({', '.join(TRANSPORTS)}, "
                         'optionally with a client such as "rest:httpx")', raw_targets)
    else:
        for n, spec in enumerate(raw_targets):
            if not isinstance(spec, str):
                r.bad(f"targets[{n}]", "must be a string", spec)
                continue
            try:
                ref = parse_target(spec)
            except KeyError as exc:
                r.bad(f"targets[{n}]", exc.args[0], got=False)
                continue
            if ref in targets:
                r.bad(f"targets[{n}]", "is listed twice", spec)
            targets.append(ref)

    d = r.table(raw, "data")
    r.unknown(d, DATA_KEYS, "data.")
    data = DataSpec(
        users=r.take(d, "users", 100, "data.", _int(1, MAX_ORDERS),
                     f"must be a positive integer of at most {MAX_ORDERS:,}"),
        orders_per_user=r.take(d, "orders_per_user", 10, "data.", _int(1, MAX_ORDERS),
                               f"must be a positive integer of at most {MAX_ORDERS:,}"),
        store=r.take(d, "store", "memory", "data.", _choice("memory", "sqlite"),
                     'must be "memory" or "sqlite"'),
        seed=r.take(d, "seed", 1, "data.", _int(0), "must be a non-negative integer"),
    )
    if data.users * data.orders_per_user > MAX_ORDERS:
        r.bad("data", f"users × orders_per_user must be at most {MAX_ORDERS:,} orders (the "
                      "seeded data set is built in memory before the run), got "
                      f"{data.users:,} × {data.orders_per_user:,}", got=False)

    duration = r.take(raw, "duration", None, "", _duration(positive=True),
                      f"must be {DURATION_HELP}, greater than zero and {UP_TO_24H}")
    warmup = r.take(raw, "warmup", 0.0, "", _duration(positive=False),
                    f"must be {DURATION_HELP}, zero or more and {UP_TO_24H}")
    repetitions = r.take(raw, "repetitions", 1, "", _int(1, MAX_REPETITIONS),
                         f"must be an integer from 1 to {MAX_REPETITIONS}")

    load = _parse_load(r, r.table(raw, "load"), duration)
    if load is not None and load.stages and duration is None:
        duration = sum(s.duration_s for s in load.stages)
    if duration is None and "duration" not in raw and not (load and load.stages):
        r.bad("duration", f"is required: {DURATION_HELP}", got=False)

    o = r.table(raw, "operations")
    r.unknown(o, OPS_KEYS, "operations.")
    weights = {op: r.take(o, op, 0.0, "operations.", _number(positive=False),
                          "must be a weight: a number of zero or more") for op in OPERATIONS}
    list_limit = r.take(o, "list_limit", 20, "operations.", _int(1, MAX_LIST_LIMIT),
                        f"must be an integer from 1 to {MAX_LIST_LIMIT}")
    if "operations" not in raw:
        r.bad("operations", "is required: weights for " + ", ".join(OPERATIONS), got=False)
    elif not any(w > 0 for w in weights.values()) and not any(
            p.startswith(f"{where}: operations.") for p in r.problems):
        r.bad("operations", "at least one of get, list, create needs a weight above zero",
              got=False)

    if r.problems:
        raise ScenarioError(r.problems)
    assert load is not None and duration is not None
    return Scenario(
        name=name, description=description, targets=tuple(targets), data=data, load=load,
        duration_s=duration, warmup_s=warmup, repetitions=repetitions,
        operations=Operations(list_limit=list_limit, **weights), path=where,
    )


def _parse_load(r: _Reader, ld: dict[str, Any], duration: float | None) -> LoadSpec | None:
    p = "load."
    r.unknown(ld, LOAD_KEYS, p)
    n_before = len(r.problems)
    model = r.take(ld, "model", "open", p, _choice("open", "closed"), 'must be "open" or "closed"')
    foreign = CLOSED_ONLY if model == "open" else OPEN_ONLY
    for key in foreign:
        if key in ld:
            r.bad(p + key, f'applies only to model = "{"closed" if model == "open" else "open"}"',
                  got=False)
    timeout = r.take(ld, "timeout", DEFAULT_TIMEOUT_S, p,
                     _duration(positive=True, maximum=MAX_WAIT_S),
                     f"must be {DURATION_HELP}, greater than zero and {UP_TO_1H}")
    if model == "closed":
        users = r.take(ld, "users", 0, p, _int(1, MAX_USERS),
                       f"must be a positive integer (virtual users) of at most {MAX_USERS:,}")
        if "users" not in ld:
            r.bad(p + "users", 'is required for model = "closed" (virtual users)', got=False)
        think = r.take(ld, "think_time", 0.0, p, _duration(positive=False, maximum=MAX_WAIT_S),
                       f"must be {DURATION_HELP}, zero or more and {UP_TO_1H}")
        if len(r.problems) > n_before:
            return None
        return LoadSpec(model="closed", users=users, think_time_s=think, timeout_s=timeout)

    arrival = r.take(ld, "arrival", "poisson", p, _choice("uniform", "poisson"),
                     'must be "uniform" or "poisson"')
    in_flight = r.take(ld, "in_flight", DEFAULT_IN_FLIGHT, p, _int(1, MAX_IN_FLIGHT),
                       "must be a positive integer (requests in flight per process) of at most "
                       f"{MAX_IN_FLIGHT:,}")
    stages: list[Stage] = []
    if "rate" in ld and "stages" in ld:
        r.bad(p + "rate", "give either load.rate or load.stages, not both", got=False)
    elif "rate" in ld:
        rate = r.take(ld, "rate", None, p, _number(positive=True, maximum=MAX_RATE), RATE_HELP)
        if rate is not None and duration is not None:
            stages.append(Stage(rate, duration))
    elif "stages" in ld:
        raw_stages = ld["stages"]
        if not isinstance(raw_stages, list) or not raw_stages:
            r.bad(p + "stages", "must be a non-empty list of {rate, duration} tables", raw_stages)
        else:
            for n, st in enumerate(raw_stages):
                sp = f"{p}stages[{n}]."
                if not isinstance(st, dict):
                    r.bad(f"{p}stages[{n}]", "must be a table {rate = ..., duration = ...}", st)
                    continue
                r.unknown(st, ("rate", "duration"), sp)
                rate = r.take(st, "rate", None, sp, _number(positive=True, maximum=MAX_RATE),
                              RATE_HELP)
                dur = r.take(st, "duration", None, sp, _duration(positive=True),
                             f"must be {DURATION_HELP}, greater than zero and {UP_TO_24H}")
                for key in ("rate", "duration"):
                    if key not in st:
                        r.bad(sp + key, "is required", got=False)
                if rate is not None and dur is not None:
                    stages.append(Stage(rate, dur))
            total = sum(s.duration_s for s in stages)
            if total > MAX_DURATION_S and len(stages) == len(raw_stages):
                r.bad(p + "stages", f"the stages' durations must add up to {UP_TO_24H}",
                      f"{total:g} s")
            elif duration is not None and stages and len(stages) == len(raw_stages) \
                    and not math.isclose(total, duration):
                r.bad("duration", f"must equal the sum of load.stages durations ({total:g} s) "
                                  "or be left out", duration)
    else:
        r.bad(p + "rate", 'is required for model = "open": a positive number (requests/s), '
                          "or give load.stages", got=False)
    if len(r.problems) > n_before:
        return None
    return LoadSpec(model="open", stages=tuple(stages), arrival=arrival, in_flight=in_flight,
                    timeout_s=timeout)


def load_scenario(path: Path | str) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such scenario file") from None
    except IsADirectoryError:
        raise ScenarioError([f"{path}: is a folder, not a scenario file"]) from None
    except UnicodeDecodeError as exc:
        raise ScenarioError([f"{path}: not a text file: a scenario is UTF-8 TOML "
                             f"(undecodable byte at offset {exc.start})"]) from None
    except OSError as exc:
        raise ScenarioError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError([f"{path}: not valid TOML: {exc}"]) from None
    return parse_scenario(raw, str(path))


def find_scenario(name_or_path: str, directory: Path = Path("scenarios")) -> Path:
    """A path as given, or a name looked up as `<directory>/<name>.toml`."""
    path = Path(name_or_path)
    if path.exists() or path.suffix == ".toml" or "/" in name_or_path:
        return path
    candidate = directory / f"{name_or_path}.toml"
    if candidate.exists():
        return candidate
    known = ", ".join(p.stem for p in sorted(directory.glob("*.toml"))) or "none"
    raise UserError(f"no scenario {name_or_path!r}: not a file, and not in {directory}/ "
                    f"(known: {known})")


def list_scenarios(directory: Path) -> list[tuple[Path, Scenario | ScenarioError]]:
    """Every scenario file in a folder, loaded (or the error that stops it loading)."""
    if not directory.is_dir():
        raise UserError(f"{directory}: no such folder")
    out: list[tuple[Path, Scenario | ScenarioError]] = []
    for path in sorted(directory.glob("*.toml")):
        try:
            out.append((path, load_scenario(path)))
        except ScenarioError as exc:
            out.append((path, exc))
        except UserError as exc:  # e.g. a file removed while listing: listed, not fatal
            out.append((path, ScenarioError([str(exc)])))
    return out


def duration_option(text: str | None, option: str, allow_zero: bool = False) -> float | None:
    """A command-line duration ("30s", "500ms", "2m" or seconds); None keeps the scenario's."""
    if text is None:
        return None
    try:
        seconds = parse_duration(float(text))
    except ValueError:
        seconds = parse_duration(text)
    if seconds is None or seconds < 0 or (seconds == 0 and not allow_zero):
        raise UserError(f'{option} takes a duration such as "30s", "500ms" or "2m"; got {text!r}')
    return seconds
