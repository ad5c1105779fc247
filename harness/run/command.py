"""`commbench run` on the terminal: run, then the summary table, warnings, failures and the
result folder."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from harness.run.consistency import describe
from harness.run.options import Interrupted, RunOptions
from harness.run.progress import summary_table
from harness.run.runner import Runner
from harness.run.target_run import slo_verdicts
from harness.scenario.slo import describe_breach
from targets.redact import redact_text

SLO_BREACHED = 3  # exit code: the run completed, and an [slo] objective did not hold


def run_command(opts: RunOptions, *, report: Callable[[Path], Path] | None = None,
                console: Console | None = None) -> int:
    """Exit 0, 1 (a target failed), 3 (an [slo] objective did not hold) or raise Interrupted
    (a KeyboardInterrupt: the CLI exits 128 + the signal) after writing the partial result.
    `report`, when given, writes the HTML report of the folder (the CLI wires it: harness/
    does not import reports/)."""
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    runner = Runner(opts, console)
    opts.check_store([t.transport for t in runner.scenario.targets if not runner.reach.by_url(t)])
    try:
        outcome = runner.run()
    except Interrupted as exc:
        exc.note = f"partial result in {exc.outcome.path}"
        raise
    if outcome.rows:
        console.print(summary_table(outcome.rows, flags={
            (r.row, r.repetition): r.flag for r in runner.runs}))
    for r in runner.runs:
        if r.consistency is not None:
            console.print(f"consistency: {r.label}: {describe(r.consistency.record())}",
                          markup=False, soft_wrap=True)
    for w in outcome.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}", soft_wrap=True)
    for label in outcome.failed:
        r = next(x for x in runner.runs if x.label == label)
        console.print(f"[red]failed:[/red] {escape(label)}: {escape(redact_text(r.error or ''))}",
                      soft_wrap=True)
    verdicts = slo_verdicts(runner.scenario, runner.runs)
    breaches = [describe_breach(v) for v in verdicts if not v["held"]]
    for line in breaches:
        console.print(f"[red]slo breached:[/red] {escape(line)}", soft_wrap=True)
    if verdicts and not breaches:
        console.print(f"slo: all {len(verdicts)} objectives held", markup=False)
    if report is not None:
        console.print(f"report: {report(outcome.path)}", markup=False)
    console.print(f"results: {outcome.path}", markup=False, soft_wrap=True)
    return 1 if outcome.failed else SLO_BREACHED if breaches else 0
