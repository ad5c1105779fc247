"""README, "Durability": the write scenarios, the event-sourcing ones and every chain
scenario keep orders in SQLite, so each transport pays for persisting the order as the
queue's broker pays for persisting its command; the lookup scenarios keep them in memory.
Checked on every shipped scenario as `commbench run` loads it (defaults included), so a new
scenario cannot drift from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.scenario import load_scenario

SCENARIOS = sorted((Path(__file__).parent.parent / "scenarios").glob("*.toml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_writes_and_chains_persist_lookups_stay_in_memory(path: Path) -> None:
    sc = load_scenario(path)
    writes_only = set(sc.operations.weights()) == {"create"}
    event_log = any(t.transport == "eventsourced" for t in sc.targets)  # the log is the pattern
    expected = "sqlite" if writes_only or event_log or sc.topology == "chain" else "memory"
    assert sc.data.store == expected, (path.stem, sc.topology, sc.operations.weights())


def _named(text: str) -> set[str]:
    """The `scenario` names quoted in a piece of README text."""
    return set(re.findall(r"`([a-z-]+)`", text))


def test_the_readme_names_the_scenarios_of_each_store() -> None:
    """The README's sentence names every single-service scenario under its store."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    start = readme.index("The write scenarios (")
    sqlite, memory = readme[start:readme.index("in-memory store.", start)].split("the others")
    loaded = [load_scenario(p) for p in SCENARIOS]
    single = {sc.name: sc.data.store for sc in loaded if sc.topology != "chain"}
    assert _named(sqlite) == {n for n, s in single.items() if s == "sqlite"}, sqlite
    assert _named(memory) == {n for n, s in single.items() if s == "memory"}, memory
