"""`commbench sweep`: every probe is a complete `commbench run` (stage, gate, load, results)
at one offered rate, its folder kept under the sweep's; the sweep adds `sweep.csv` (one row
per probe, target and repetition: offered and achieved rate, latency, errors, CPU per
request of the target and of the generator, whether the generator saturated, whether the
objectives held) and, with --find-max, `max.csv` (each target's highest sustained rate and
the probes that decided it).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.errors import UserError
from harness.run.options import RunOptions, parse_targets_option
from harness.run.results import format_cell, run_id_for
from harness.run.runner import Runner
from harness.scenario import find_scenario, load_scenario
from harness.scenario.slo import Clause, check
from harness.sweep.search import DEFAULT_MAX_PROBES, DEFAULT_PRECISION, Probe, Search, find_max

SWEEP_COLUMNS = ("target", "offered_rps", "repetition", "status", "achieved_rps",
                 "throughput_rps", "latency_p50_ms", "latency_p99_ms", "error_rate",
                 "cpu_us_per_request", "client_cpu_us_per_request", "saturated", "generator",
                 "held", "broken", "run")
MAX_COLUMNS = ("target", "objective", "sustained_rps", "broke_at_rps", "void_at_rps", "bound", "verdict",
               "cpu_us_per_request", "rps_per_server_core", "probes")


@dataclass(frozen=True)
class SweepOptions:
    base: RunOptions  # scenario, targets, duration, repetitions, cpus, broker, results_dir
    rates: tuple[float, ...] = ()
    find_max: bool = False
    slo: tuple[Clause, ...] = ()  # --slo: on operation "all", replacing the scenario's line
    start: float = 100.0
    max_probes: int = DEFAULT_MAX_PROBES
    precision: float = DEFAULT_PRECISION


class Sweep:
    def __init__(self, opts: SweepOptions, console: Console) -> None:
        if opts.find_max == bool(opts.rates):
            raise UserError("sweep: give --rates R1,R2,… or --find-max (one of the two)")
        sc = load_scenario(find_scenario(opts.base.scenario, opts.base.scenarios_dir))
        # the objectives: the scenario's [slo], with --slo replacing its line for all operations
        self.slo = {**sc.slo, **({"all": opts.slo} if opts.slo else {})}
        if opts.find_max and not self.slo:
            raise UserError('sweep --find-max needs --slo, e.g. --slo "p99<50ms,errors<1%" '
                            '(or the scenario\'s [slo] all = "…")')
        self.opts, self.console = opts, console
        if sc.load.model != "open" or len(sc.load.stages) != 1:
            raise UserError(f"sweep: {sc.name} is not an open loop at one rate; a sweep sets "
                            "the offered rate, so it needs one")
        self.targets = list(parse_targets_option(opts.base.targets) or sc.targets)
        self.folder = _claim(opts.base.results_dir, run_id_for(f"sweep-{sc.name}"))
        self.rows: list[dict[str, Any]] = []

    def run(self) -> int:
        try:
            self._run()
        finally:  # what was measured stays readable, even after Ctrl-C
            self._write()
        self.console.print(f"sweep: {self.folder}", markup=False)
        return 0

    def _run(self) -> None:
        if self.opts.find_max:
            searches = {}
            for ref in self.targets:
                searches[ref.name] = find_max(lambda rate, ref=ref: self._probe(ref.spec, rate),
                                              self.opts.start, precision=self.opts.precision,
                                              max_probes=self.opts.max_probes)
                self._write()
                self.console.print(f"{ref.name}: {searches[ref.name].describe()}", markup=False)
            self._write_max(searches)
        else:
            for rate in self.opts.rates:
                self._probe(",".join(r.spec for r in self.targets), rate)
                self._write()

    def _probe(self, targets: str, rate: float) -> Probe:
        """One `commbench run` of `targets` at `rate`; its rows go to sweep.csv."""
        self.console.print(f"sweep: {targets} at {rate:g} req/s", markup=False)
        opts = replace(self.opts.base, targets=targets, rate=rate,
                       results_dir=self.folder / "probes")
        runner = Runner(opts, self.console)
        outcome = runner.run()
        verdicts = check(self.slo, outcome.rows)
        held, broken, kinds = True, [], set()
        for r in runner.runs:
            row = next((x for x in r.rows if x["operation"] == "all"), {})
            mine = [v for v in verdicts
                    if (v["target"], v["repetition"]) == (r.ref.name, r.repetition)]
            r_broken = [f"{v['operation']}: {v['objective']}" for v in mine if not v["held"]]
            if r.status != "ok":
                r_broken.append(f"the target {r.status}")
            held = held and not r_broken
            kind = r.flag
            if _void(r.saturated, bool(r_broken), row):
                kinds.add(kind)
            broken += r_broken
            self.rows.append({
                "target": r.ref.name, "offered_rps": rate, "repetition": r.repetition,
                "status": r.status, **{k: row.get(k) for k in SWEEP_COLUMNS if k in row},
                "saturated": bool(r.saturated), "generator": kind,
                "held": not r_broken if self.slo else None,
                "broken": "; ".join(r_broken), "run": outcome.path.name})
        return Probe(rate, held, bool(kinds), "; ".join(broken), lagging=kinds == {"lagging"})

    def _write(self) -> None:
        with open(self.folder / "sweep.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=SWEEP_COLUMNS, extrasaction="ignore")
            w.writeheader()
            w.writerows({k: format_cell(v) for k, v in row.items()} for row in self.rows)

    def _write_max(self, searches: dict[str, Search]) -> None:
        objective = "; ".join(f"{op}: {', '.join(map(str, cs))}" for op, cs in self.slo.items())
        rows = [{"target": name, "objective": objective, "sustained_rps": s.sustained,
                 "broke_at_rps": s.broke_at, "void_at_rps": s.void_at, "bound": s.bound,
                 "verdict": s.describe(),
                 **self._cost_at(name, s.sustained),
                 "probes": " ".join(f"{p.rate:g}{'+' if p.held else '-'}"
                                    f"{p.void_word and f'({p.void_word})'}" for p in s.probes)}
                for name, s in searches.items()]
        with open(self.folder / "max.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=MAX_COLUMNS)
            w.writeheader()
            w.writerows({k: format_cell(v) for k, v in row.items()} for row in rows)
        (self.folder / "max.json").write_text(json.dumps(rows, indent=2) + "\n")


    def _cost_at(self, target: str, rate: float | None) -> dict[str, float | None]:
        """The target's CPU per request at its sustained rate (mean over repetitions) and
        what it implies, load-independent: requests per second one server core carries."""
        cpus = [float(r["cpu_us_per_request"]) for r in self.rows
                if r["target"] == target and r["offered_rps"] == rate
                and r.get("cpu_us_per_request") is not None]
        if not cpus:
            return {"cpu_us_per_request": None, "rps_per_server_core": None}
        cpu = sum(cpus) / len(cpus)
        return {"cpu_us_per_request": round(cpu, 1),
                "rps_per_server_core": round(1e6 / cpu) if cpu > 0 else None}


def _void(saturated: bool, broke: bool, row: dict[str, Any]) -> bool:
    """Whether a probe says nothing about the target: its generator was flagged (it fell
    behind, or kept the rate with a lag that could account for a fifth or more of the p99),
    and either the objective broke (the lag may be what broke it) or fewer than 99 % of the
    requests went out (the rate was never offered). A probe that held while every request went out stands
    even with the generator lagging: lag only adds to the latency measured."""
    if not saturated:
        return False
    achieved, intended = row.get("achieved_rps"), row.get("intended_rps")
    short = achieved is None or not intended or achieved < 0.99 * intended
    return broke or short


def _claim(results_dir: Path, name: str) -> Path:
    """A new folder for the sweep (a suffix when the name is taken this second)."""
    for n in range(100):
        folder = results_dir / (name if n == 0 else f"{name}-{n + 1}")
        try:
            folder.mkdir(parents=True)
        except FileExistsError:
            continue
        except OSError as exc:
            raise UserError(f"--results-dir {results_dir}: cannot write there "
                            f"({exc.strerror})") from None
        return folder
    raise UserError(f"--results-dir {results_dir}: too many sweeps named {name}")
