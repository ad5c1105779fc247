"""Scenario files: TOML data → frozen, fully validated pydantic models (`model.py`), read and
listed by `files.py`, with one-line problems built in `errors.py` from value types in
`types.py`; faults on a timeline are `faults.py`. This is the package's public face."""

from harness.scenario.faults import FaultSpec, parse_fault, parse_fault_option
from harness.scenario.files import (
    duration_option,
    find_scenario,
    list_scenarios,
    load_scenario,
    parse_scenario,
    scenario_schema,
)
from harness.scenario.model import (
    DataSpec,
    LoadSpec,
    Operations,
    Scenario,
    ScenarioError,
    Stage,
)
from harness.scenario.types import TargetRef, parse_duration, parse_target

__all__ = ["DataSpec", "FaultSpec", "LoadSpec", "Operations", "Scenario", "ScenarioError",
           "Stage", "TargetRef", "duration_option", "find_scenario", "list_scenarios",
           "load_scenario", "parse_duration", "parse_fault", "parse_fault_option",
           "parse_scenario", "parse_target", "scenario_schema"]
