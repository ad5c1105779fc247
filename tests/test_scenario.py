"""Scenario files: every shipped scenario loads; every bad key and value is reported with the
file, the key and what would be valid."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.scenario import (
    ScenarioError,
    Stage,
    TargetRef,
    find_scenario,
    load_scenario,
    parse_duration,
    parse_fault_option,
    parse_scenario,
)
from targets.registry import TRANSPORTS

ROOT = Path(__file__).resolve().parent.parent
W = "x.toml"


def base() -> dict:
    return {
        "name": "t", "description": "d", "targets": ["rest"], "duration": "2s",
        "warmup": "500ms", "repetitions": 1,
        "data": {"users": 10, "orders_per_user": 2, "store": "memory", "seed": 3},
        "load": {"model": "open", "rate": 50, "arrival": "uniform", "in_flight": 8,
                 "timeout": "5s"},
        "operations": {"get": 1},
    }


def with_(path: str, value: object) -> dict:
    raw = base()
    *parents, key = path.split(".")
    node = raw
    for p in parents:
        node = node[p]
    if value is DELETE:
        del node[key]
    else:
        node[key] = value
    return raw


class _Delete:
    def __repr__(self) -> str:  # in test ids, which must agree across pytest-xdist workers
        return "<deleted>"


DELETE = _Delete()


@pytest.mark.parametrize("name", ["order-lookup", "order-creation", "mixed", "quick"])
def test_shipped_scenarios_load(name):
    sc = load_scenario(ROOT / "scenarios" / f"{name}.toml")
    assert sc.name == name and sc.description
    assert {t.transport for t in sc.targets} == {"rest", "grpc", "queue"}
    assert sc.operations.weights()


def test_weights_of_the_issue():
    ops = {n: load_scenario(ROOT / "scenarios" / f"{n}.toml").operations.weights()
           for n in ("order-lookup", "order-creation", "mixed")}
    assert ops["order-lookup"] == {"get": 80, "list": 20}
    assert ops["order-creation"] == {"create": 100}
    assert ops["mixed"] == {"get": 70, "list": 10, "create": 20}


def test_quick_is_short():
    sc = load_scenario(ROOT / "scenarios" / "quick.toml")
    assert len(sc.targets) * (sc.duration_s + sc.warmup_s) * sc.repetitions <= 30


def test_valid_scenario_values():
    sc = parse_scenario(base(), W)
    assert sc.duration_s == 2.0 and sc.warmup_s == 0.5
    assert sc.load.stages == (Stage(50.0, 2.0),) and sc.load.rate == 50
    assert sc.targets == (TargetRef("rest", "aiohttp"),)
    assert sc.to_dict()["targets"] == ["rest:aiohttp"]


def test_variant_and_default_targets():
    raw = with_("targets", ["rest:httpx", "grpc"])
    sc = parse_scenario(raw, W)
    assert [t.name for t in sc.targets] == ["rest-httpx", "grpc"]
    assert len(parse_scenario(with_("targets", DELETE), W).targets) == len(TRANSPORTS)


def test_a_chain_takes_only_transports_that_serve_it():
    """The registry decides (a transport with downstream roles): by default every one of
    those; a named one that does not serve the chain is refused."""
    raw = with_("targets", DELETE)
    raw["topology"] = "chain"
    sc = parse_scenario(raw, W)
    assert [t.transport for t in sc.targets] == [t.name for t in TRANSPORTS.values()
                                                 if t.serves_chain]
    assert "eventsourced" not in [t.transport for t in sc.targets]
    raw["targets"] = ["rest", "eventsourced"]
    with pytest.raises(ScenarioError) as err:
        parse_scenario(raw, W)
    assert err.value.problems == [
        "x.toml: targets[1]: eventsourced does not serve the chain topology"]
    with pytest.raises(UserError, match="eventsourced does not serve the chain topology"):
        sc.with_overrides(targets=(TargetRef("eventsourced", "aiohttp"),))


def test_stages_give_the_duration():
    raw = with_("load.stages", [{"rate": 10, "duration": "1s"}, {"rate": 20, "duration": 2}])
    del raw["load"]["rate"]
    del raw["duration"]
    sc = parse_scenario(raw, W)
    assert sc.duration_s == 3.0 and [s.rate for s in sc.load.stages] == [10, 20]


def test_closed_model():
    raw = base()
    raw["load"] = {"model": "closed", "users": 4, "think_time": "20ms"}
    sc = parse_scenario(raw, W)
    assert sc.load.users == 4 and sc.load.think_time_s == pytest.approx(0.02)


@pytest.mark.parametrize(("text", "seconds"), [
    ("10s", 10.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), (3, 3.0), (0.25, 0.25),
    ("1.5s", 1.5), ("fast", None), ("10", None), (True, None), ("-1s", None),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


BAD = [
    ("nmae", "x", 'x.toml: nmae: unknown key; valid keys here: name, description, targets, '
                  'data, load, duration, warmup, repetitions, operations, topology, read_your_writes, '
                  'faults, policies, variants, slo'),
    ("name", DELETE, "x.toml: name: is required (a short name for result folders)"),
    ("name", "a b", "x.toml: name: may hold only letters, digits, '.', '_' and '-', got \"a b\""),
    ("name", 3, "x.toml: name: must be a non-empty string, got 3"),
    ("description", 1, "x.toml: description: must be a string, got 1"),
    ("targets", [], 'x.toml: targets: must be a non-empty list of targets (rest, grpc, queue, '
                    'eventsourced, optionally with a client such as "rest:httpx"), got []'),
    ("targets", ["soap"], "x.toml: targets[0]: unknown target 'soap'; known: rest, grpc, queue, "
                          "eventsourced"),
    ("targets", ["rest:curl"], "x.toml: targets[0]: rest has no client 'curl'; choose one of: "
                               "aiohttp, httpx, probe"),
    ("targets", ["rest", "rest"], 'x.toml: targets[1]: is listed twice, got "rest"'),
    ("targets", [1], "x.toml: targets[0]: must be a string, got 1"),
    ("duration", "fast", 'x.toml: duration: must be a duration such as "10s", "500ms", "2m" or '
                         'a number of seconds, greater than zero and at most 24h, got "fast"'),
    ("duration", 0, 'x.toml: duration: must be a duration such as "10s", "500ms", "2m" or a '
                    'number of seconds, greater than zero and at most 24h, got 0'),
    ("duration", DELETE, 'x.toml: duration: is required: a duration such as "10s", "500ms", '
                         '"2m" or a number of seconds'),
    ("warmup", "-1s", 'x.toml: warmup: must be a duration such as "10s", "500ms", "2m" or a '
                      'number of seconds, zero or more and at most 24h, got "-1s"'),
    ("repetitions", 0, "x.toml: repetitions: must be an integer from 1 to 1000, got 0"),
    ("repetitions", 1001, "x.toml: repetitions: must be an integer from 1 to 1000, got 1001"),
    ("duration", "25h", 'x.toml: duration: must be a duration such as "10s", "500ms", "2m" or a '
                        'number of seconds, greater than zero and at most 24h, got "25h"'),
    ("warmup", 86401, 'x.toml: warmup: must be a duration such as "10s", "500ms", "2m" or a '
                      'number of seconds, zero or more and at most 24h, got 86401'),
    ("data", 3, "x.toml: data: must be a table ([data]), got 3"),
    ("data.users", 0, "x.toml: data.users: must be a positive integer of at most 10,000,000, "
                      "got 0"),
    ("data.users", 1.5, "x.toml: data.users: must be a positive integer of at most 10,000,000, "
                        "got 1.5"),
    ("data.users", 100_000_000_000, "x.toml: data.users: must be a positive integer of at most "
                                    "10,000,000, got 100000000000"),
    ("data.orders_per_user", "10", 'x.toml: data.orders_per_user: must be a positive integer of '
                                   'at most 10,000,000, got "10"'),
    ("data.orders_per_user", 5_000_000, 'x.toml: data: users × orders_per_user must be at most '
                                        '10,000,000 orders (the seeded data set is built in '
                                        'memory before the run), got 10 × 5,000,000'),
    ("data.store", "redis", 'x.toml: data.store: must be "memory" or "sqlite", got "redis"'),
    ("data.seed", -1, "x.toml: data.seed: must be a non-negative integer, got -1"),
    ("data.user", 3, "x.toml: data.user: unknown key; valid keys here: users, orders_per_user, "
                     "store, seed"),
    ("load.model", "burst", 'x.toml: load.model: must be "open" or "closed", got "burst"'),
    ("load.rate", "fast", 'x.toml: load.rate: must be a positive number (requests/s) of at most '
                          '1,000,000, got "fast"'),
    ("load.rate", 0, "x.toml: load.rate: must be a positive number (requests/s) of at most "
                     "1,000,000, got 0"),
    ("load.rate", 1e9, "x.toml: load.rate: must be a positive number (requests/s) of at most "
                       "1,000,000, got 1000000000.0"),
    ("load.rate", DELETE, 'x.toml: load.rate: is required for model = "open": a positive number '
                          '(requests/s), or give load.stages'),
    ("load.arrival", "gaussian", 'x.toml: load.arrival: must be "uniform" or "poisson", '
                                 'got "gaussian"'),
    ("load.in_flight", 0, "x.toml: load.in_flight: must be a positive integer (requests in "
                          "flight per process) of at most 1,000,000, got 0"),
    ("load.timeout", "0s", 'x.toml: load.timeout: must be a duration such as "10s", "500ms", '
                           '"2m" or a number of seconds, greater than zero and at most 1h, '
                           'got "0s"'),
    ("load.timeout", "2h", 'x.toml: load.timeout: must be a duration such as "10s", "500ms", '
                           '"2m" or a number of seconds, greater than zero and at most 1h, '
                           'got "2h"'),
    ("load.users", 5, 'x.toml: load.users: applies only to model = "closed"'),
    ("load.think_time", "1s", 'x.toml: load.think_time: applies only to model = "closed"'),
    ("load.rates", 5, "x.toml: load.rates: unknown key; valid keys here: model, rate, stages, "
                      "arrival, users, think_time, in_flight, timeout"),
    ("load.stages", [{"rate": 1, "duration": "1s"}],
     "x.toml: load.rate: give either load.rate or load.stages, not both"),
    ("operations", DELETE, "x.toml: operations: is required: weights for get, list, create, noop"),
    ("operations.get", -1, "x.toml: operations.get: must be a weight: a number of zero or more, "
                           "got -1"),
    ("operations.get", 0, "x.toml: operations: at least one of get, list, create, noop needs a weight "
                          "above zero"),
    ("operations.delete", 1, "x.toml: operations.delete: unknown key; valid keys here: get, "
                             "list, create, noop, list_limit"),
    ("operations.list_limit", 0, "x.toml: operations.list_limit: must be an integer from 1 to "
                                 "1000, got 0"),
    ("operations.list_limit", 5000, "x.toml: operations.list_limit: must be an integer from 1 "
                                    "to 1000, got 5000"),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_bad_key_or_value(key, value, message):
    raw = with_(key, value) if key in base() or "." in key or value is not DELETE else base()
    with pytest.raises(ScenarioError) as err:
        parse_scenario(raw, W)
    assert message in err.value.problems, err.value.problems


@pytest.mark.parametrize(("stages", "message"), [
    ([], "x.toml: load.stages: must be a non-empty list of {rate, duration} tables, got []"),
    ([3], "x.toml: load.stages[0]: must be a table {rate = ..., duration = ...}, got 3"),
    ([{"rate": 1}], "x.toml: load.stages[0].duration: is required"),
    ([{"rate": 0, "duration": "1s"}],
     "x.toml: load.stages[0].rate: must be a positive number (requests/s) of at most 1,000,000, "
     "got 0"),
    ([{"rate": 1, "duration": "20h"}, {"rate": 1, "duration": "20h"}],
     'x.toml: load.stages: the stages\' durations must add up to at most 24h, got "144000 s"'),
    ([{"rate": 1, "duration": "1s", "ramp": True}],
     "x.toml: load.stages[0].ramp: unknown key; valid keys here: rate, duration"),
    ([{"rate": 1, "duration": "1s"}],
     'x.toml: duration: must equal the sum of load.stages durations (1 s) or be left out, '
     'got 2.0'),
])
def test_bad_stages(stages, message):
    raw = base()
    del raw["load"]["rate"]
    raw["load"]["stages"] = stages
    with pytest.raises(ScenarioError) as err:
        parse_scenario(raw, W)
    assert message in err.value.problems, err.value.problems


def test_closed_users_are_bounded():
    raw = base()
    raw["load"] = {"model": "closed", "users": 10**9, "think_time": "2h"}
    with pytest.raises(ScenarioError) as err:
        parse_scenario(raw, W)
    assert err.value.problems == [
        "x.toml: load.users: must be a positive integer (virtual users) of at most 100,000, "
        "got 1000000000",
        'x.toml: load.think_time: must be a duration such as "10s", "500ms", "2m" or a number '
        'of seconds, zero or more and at most 1h, got "2h"',
    ]


def test_overrides_are_bounded():
    sc = parse_scenario(base(), W)
    with pytest.raises(UserError, match="--rate must be .* at most 1,000,000, got 2e"):
        sc.with_overrides(rate=2e6)
    with pytest.raises(UserError, match="--duration must be positive and at most 24h"):
        sc.with_overrides(duration_s=86401)
    with pytest.raises(UserError, match="--repetitions must be from 1 to 1000"):
        sc.with_overrides(repetitions=5000)


def test_closed_needs_users():
    raw = base()
    raw["load"] = {"model": "closed", "rate": 3}
    with pytest.raises(ScenarioError) as err:
        parse_scenario(raw, W)
    assert err.value.problems == [
        'x.toml: load.rate: applies only to model = "open"',
        'x.toml: load.users: is required for model = "closed" (virtual users)',
    ]


def test_all_problems_at_once():
    raw = with_("load.rate", "fast")
    raw["data"]["store"] = "redis"
    with pytest.raises(ScenarioError) as err:
        parse_scenario(raw, W)
    assert len(err.value.problems) == 2


def test_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ScenarioError, match=r"bad\.toml: not valid TOML"):
        load_scenario(bad)
    with pytest.raises(UserError, match="no such scenario file"):
        load_scenario(tmp_path / "missing.toml")
    known = ", ".join(sorted(p.stem for p in (ROOT / "scenarios").glob("*.toml")))
    assert "mixed, order-creation" in known
    with pytest.raises(UserError, match=rf"\(known: {known}\)$"):
        find_scenario("nope", ROOT / "scenarios")
    assert find_scenario("quick", ROOT / "scenarios") == ROOT / "scenarios" / "quick.toml"


def test_overrides():
    sc = parse_scenario(base(), W)
    o = sc.with_overrides(rate=200, duration_s=4)
    assert o.load.stages == (Stage(200, 4),) and o.duration_s == 4
    closed = base()
    closed["load"] = {"model": "closed", "users": 2}
    with pytest.raises(UserError, match="--rate applies to open-loop"):
        parse_scenario(closed, W).with_overrides(rate=10)


def test_scenarios_command_lists_names_and_descriptions(tmp_path):
    for n in ("quick", "mixed"):
        (tmp_path / f"{n}.toml").write_text((ROOT / "scenarios" / f"{n}.toml").read_text())
    (tmp_path / "broken.toml").write_text('name = "broken"\n')
    out = subprocess.run([str(Path(sys.executable).parent / "commbench"), "scenarios", "--dir",
                          str(tmp_path)], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[0].startswith("broken") and "INVALID" in lines[0]
    assert lines[1].startswith("mixed") and "A shop's day" in lines[1]
    assert lines[2].startswith("quick") and "Demo" in lines[2]


def test_order_creation_persists_on_every_transport():
    sc = load_scenario(ROOT / "scenarios" / "order-creation.toml")
    assert sc.data.store == "sqlite"
    assert "durab" in sc.description


def test_non_utf8_scenario_is_one_line_naming_the_file(tmp_path):
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe")
    proc = subprocess.run([str(Path(sys.executable).parent / "commbench"), "run", str(binary),
                           "--results-dir", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"commbench: {binary}: not a text file: a scenario is UTF-8 "
                                   "TOML (undecodable byte at offset 0)")
    assert not (tmp_path / "r").exists()


def test_scenarios_command_lists_unreadable_files_as_invalid(tmp_path):
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe")
    (tmp_path / "adir.toml").mkdir()
    (tmp_path / "quick.toml").write_text((ROOT / "scenarios" / "quick.toml").read_text())
    proc = subprocess.run([str(Path(sys.executable).parent / "commbench"), "scenarios", "--dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("adir") and "INVALID" in lines[0] and "is a folder" in lines[0]
    assert lines[1].startswith("binary") and "INVALID" in lines[1] and "UTF-8" in lines[1]
    assert lines[2].startswith("quick") and "Demo" in lines[2]


def test_schema_accepts_the_shipped_scenarios_and_refuses_unknown_keys():
    import jsonschema  # dev extras
    out = subprocess.run([sys.executable, "-m", "harness.cli", "scenarios", "--schema"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    schema = json.loads(out)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    shipped = sorted((ROOT / "scenarios").glob("*.toml"))
    assert shipped
    for path in shipped:
        raw = tomllib.loads(path.read_text())
        assert not list(validator.iter_errors(raw)), path.name
    for key, value in [("nmae", "x"), ("load.rates", 5), ("data.user", 3)]:
        assert list(validator.iter_errors(with_(key, value))), key
    assert not list(validator.iter_errors(base()))
    tables = [schema, *schema["$defs"].values()]
    assert all(p.get("description") for t in tables for p in t["properties"].values())


def _faulted(*faults: dict, topology: str = "chain") -> dict:
    raw = base()
    raw["topology"] = topology
    raw["faults"] = list(faults)
    return raw


def test_faults_on_the_chain_topology():
    sc = parse_scenario(_faulted(
        {"service": "payment", "kind": "pause", "at": "0s", "duration": 1},
        {"service": "inventory", "kind": "delay", "at": 0.5, "duration": "1s", "delay": "2s",
         "jitter": "100ms"},
        {"service": "payment", "kind": "errors", "at": "1s", "duration": "1s", "fraction": 0.2}), W)
    assert sc.topology == "chain"
    assert [(f.service, f.kind, f.at_s, f.end_s) for f in sc.faults] == [
        ("payment", "pause", 0.0, 1.0), ("inventory", "delay", 0.5, 1.5),
        ("payment", "errors", 1.0, 2.0)]
    assert sc.faults[1].delay_s == 2.0 and sc.faults[1].jitter_s == pytest.approx(0.1)
    assert sc.to_dict()["faults"][2]["fraction"] == 0.2


@pytest.mark.parametrize(("fault", "topology", "message"), [
    ({"service": "payment", "kind": "pause", "at": "0s", "duration": "1s"}, "single",
     'x.toml: faults[0]: service "payment" exists only with topology = "chain"'),
    ({"service": "payment", "kind": "pause", "at": "1s", "duration": "5s"}, "chain",
     "x.toml: faults[0]: must end within the measured window (2 s): it ends at 6 s"),
    ({"service": "payment", "kind": "delay", "at": "0s", "duration": "1s"}, "chain",
     'x.toml: faults[0]: kind = "delay" needs delay (the added latency, e.g. "2s")'),
    ({"service": "payment", "kind": "melt", "at": "0s", "duration": "1s"}, "chain",
     ('x.toml: faults[0].kind: must be "kill" or "pause" or "delay" or "errors" or "crash" '
      'or "broker" or "projector", got "melt"')),
    ({"service": "payment", "kind": "broker", "at": "0s", "duration": "1s"}, "chain",
     "x.toml: faults[0]: kind = \"broker\" goes with service = \"broker\" (the broker is not "
     "one of the order flow's services), and only with it"),
    ({"service": "broker", "kind": "broker", "at": "0s", "duration": "16s"}, "single",
     "x.toml: faults[0]: kind = \"broker\" lasts at most 15s (a queue service longer without "
     "its broker gives up)"),
    ({"service": "payment", "kind": "errors", "at": "0s", "duration": "1s", "fraction": 1.5},
     "chain", "x.toml: faults[0].fraction: must be a number above 0 and at most 1, got 1.5"),
])
def test_bad_faults(fault, topology, message):
    with pytest.raises(ScenarioError) as err:
        parse_scenario(_faulted(fault, topology=topology), W)
    assert message in err.value.problems, err.value.problems


def test_fault_option():
    f = parse_fault_option("payment:delay=2s,jitter=200ms@10s+10s")
    assert (f.kind, f.delay_s, f.jitter_s, f.at_s, f.duration_s) == ("delay", 2.0, 0.2, 10.0, 10.0)
    assert parse_fault_option("payment:errors=0.2@5s+10s").fraction == 0.2
    assert parse_fault_option("order:kill@1+2").end_s == 3.0
    # the broker is not a service of the flow: `broker@…` is its short form, on any topology
    assert parse_fault_option("broker@1s+2s") == parse_fault_option("broker:broker@1s+2s")
    assert parse_fault_option("broker@1s+2s").describe() == "broker: stopped from 1 s for 2 s"
    sc = parse_scenario(_faulted({"service": "broker", "kind": "broker", "at": 0, "duration": 1},
                                 topology="single"), W)
    assert [(f.service, f.kind) for f in sc.faults] == [("broker", "broker")]
    with pytest.raises(UserError, match="--fault takes"):
        parse_fault_option("payment@1s+2s")
    with pytest.raises(UserError, match=r"--fault takes SERVICE:KIND\[=PARAMS\]@AT\+DURATION"):
        parse_fault_option("payment pause")
    with pytest.raises(UserError, match='--fault payment:errors@5s\\+10s: kind = "errors" needs'):
        parse_fault_option("payment:errors@5s+10s")


def test_slo_reads_back_as_written():
    raw = base()
    raw["slo"] = {"all": "p99 < 50ms, errors < 1%", "get": "p99.9<0.2s, rps > 10"}
    sc = parse_scenario(raw, W)
    assert sc.to_dict()["slo"] == {"all": "p99 < 50ms, errors < 1%",
                                   "get": "p99.9 < 200ms, rps > 10"}
    again = base()
    again["slo"] = sc.to_dict()["slo"]
    assert parse_scenario(again, W).slo == sc.slo


@pytest.mark.parametrize(("slo", "message"), [
    ({"all": "p99 < 50"}, "x.toml: slo: all: 'p99 < 50': p99 takes a duration with its unit, "
                          'such as "50ms"'),
    ({"all": "p99 > 5ms"}, "x.toml: slo: all: 'p99 > 5ms': p99 takes '<'"),
    ({"all": "errors < 150%"}, "x.toml: slo: all: 'errors < 150%': errors takes a percentage "
                               "above 0 and at most 100% (or a fraction above 0 and at most 1)"),
    ({"create": "p99 < 5ms"}, "x.toml: slo.create: names an operation the mix does not have "
                              "(weights: get, list)"),
    ({"nope": "p99 < 5ms"}, "x.toml: slo: nope: not an operation; use one of get, list, "
                            "create, create_accepted, noop, all"),
])
def test_bad_slo(slo, message):
    raw = base()
    raw["operations"] = {"get": 1, "list": 1}
    raw["slo"] = slo
    with pytest.raises(ScenarioError) as err:
        parse_scenario(raw, W)
    assert message in err.value.problems, err.value.problems
