"""The `commbench sweep` command (registered in harness/cli.py): options in, one call out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness.errors import UserError
from targets.serving import DEFAULT_AMQP_URL


def sweep(
    scenario: Annotated[str, typer.Argument(help="an open-loop scenario file, or a name in "
                                                 "--scenarios-dir")],
    rates: Annotated[str | None, typer.Option(
        help='offered rates to run, e.g. "200,400,800" (requests/s)')] = None,
    find_max: Annotated[bool, typer.Option(
        "--find-max", help="search each target's highest rate within --slo: double, then "
                           "bisect; a probe on which the generator saturated never decides "
                           "it")] = False,
    slo: Annotated[str | None, typer.Option(
        help='objectives on all operations, written as in a scenario\'s slo table, e.g. '
             '"p99<50ms,errors<1%"')] = None,
    start: Annotated[float, typer.Option(min=1, help="--find-max: the first rate")] = 100.0,
    max_probes: Annotated[int, typer.Option(min=1, max=50, help="--find-max: probes per "
                                                                "target at most")] = 12,
    targets: Annotated[str | None, typer.Option(help='comma-separated targets (default: the '
                                                     "scenario's)")] = None,
    duration: Annotated[str | None, typer.Option(
        help='each probe\'s measured duration ("10s"; default: the scenario\'s)')] = None,
    repetitions: Annotated[int | None, typer.Option(
        help="repetitions per probe (a probe holds when every repetition does)")] = None,
    processes: Annotated[int, typer.Option(help="generator processes")] = 1,
    target_cpus: Annotated[str | None, typer.Option(help='pin targets to CPUs, e.g. "1"')] = None,
    load_cpus: Annotated[str | None, typer.Option(help='pin the load generator, e.g. "0"')] = None,
    results_dir: Annotated[Path, typer.Option(help="where the sweep's folder goes")] = Path("results"),
    scenarios_dir: Annotated[Path, typer.Option(help="where names are looked up")] = Path("scenarios"),
    amqp_url: Annotated[str, typer.Option(help="RabbitMQ to use; when it does not answer, "
                                               "commbench starts a private broker")] = DEFAULT_AMQP_URL,
    report: Annotated[bool, typer.Option(help="write report.html into the sweep's folder")] = False,
) -> None:
    """Run a scenario at several offered rates (--rates), or find each target's highest rate
    within objectives (--find-max --slo); writes results/sweep-<…>/sweep.csv (and max.csv)."""
    from rich.console import Console

    from harness.run.options import RunOptions, parse_cpus
    from harness.scenario import duration_option
    from harness.scenario.slo import parse_clauses
    from harness.sweep.command import Sweep, SweepOptions

    try:
        offered = tuple(float(r) for r in rates.split(",") if r.strip()) if rates else ()
    except ValueError:
        raise UserError(f'--rates takes numbers separated by commas, e.g. "200,400", '
                        f"got {rates!r}") from None
    if any(r <= 0 for r in offered):
        raise UserError(f"--rates must all be positive, got {rates!r}")
    try:
        clauses = parse_clauses(slo) if slo else ()
    except ValueError as exc:
        raise UserError(f"--slo: {exc}") from None
    base = RunOptions(scenario=scenario, targets=targets,
                      duration_s=duration_option(duration, "--duration"),
                      repetitions=repetitions, processes=processes,
                      target_cpus=parse_cpus(target_cpus, "--target-cpus"),
                      load_cpus=parse_cpus(load_cpus, "--load-cpus"), results_dir=results_dir,
                      amqp_url=amqp_url, scenarios_dir=scenarios_dir)
    opts = SweepOptions(base, rates=offered, find_max=find_max, slo=clauses, start=start,
                        max_probes=max_probes)
    sweep = Sweep(opts, Console())
    code = sweep.run()
    if report:
        from reports.sweep import write_sweep_report

        typer.echo(f"report: {write_sweep_report(sweep.folder)}")
    raise typer.Exit(code)
