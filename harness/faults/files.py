"""faults.csv and cascade.csv of a run with faults, from run.json's target rows."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from harness.faults.cascade import CASCADE_COLUMNS
from harness.faults.injector import FAULT_COLUMNS
from harness.run.results import format_cell


def write_fault_files(folder: Path, targets: list[dict[str, Any]]) -> None:
    """faults.csv (each fault as applied) and cascade.csv (its numbers at the edge); written
    only when the run had faults."""
    for name, key, cols in (("faults.csv", "faults", FAULT_COLUMNS),
                            ("cascade.csv", "cascade", CASCADE_COLUMNS)):
        rows = [{"target": t["name"], "repetition": t["repetition"], **row}
                for t in targets for row in t.get(key) or []]
        if rows:
            with open(folder / name, "w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, fieldnames=cols)
                w.writeheader()
                w.writerows({k: format_cell(v) for k, v in row.items()} for row in rows)
