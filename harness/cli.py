"""The `commbench` command line. Commands are thin: they parse options, call one harness
module, and turn user-fixable errors into one line and exit code 2."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated

import click
import typer

from harness import lifecycle
from harness.errors import UserError
from reports.errors import ReportError
from targets.core.errors import OrderError
from targets.core.seed import SeedSpec
from targets.registry import TRANSPORTS, get_transport
from targets.serving import AMQP_URL_ENV, DEFAULT_AMQP_URL, ServeConfig, ServeError

app = typer.Typer(
    help="Benchmark and compare microservice communication: REST, gRPC and a message queue.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

AmqpUrl = Annotated[str, typer.Option(help="RabbitMQ to use; when it does not answer, "
                                            "commbench starts a private broker")]


@app.command()
def serve(
    transport: Annotated[str, typer.Argument(help=f"one of: {', '.join(TRANSPORTS)}")],
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535,
                                      help="0 lets the OS choose; the URL is printed")] = 0,
    store: Annotated[str, typer.Option(help="'memory' or 'sqlite:PATH' (durable, WAL)")] = "memory",
    amqp_url: Annotated[str, typer.Option(
        envvar=AMQP_URL_ENV, help="broker for the queue target")] = DEFAULT_AMQP_URL,
    namespace: Annotated[str, typer.Option(help="prefix of queue and exchange names")] = "commbench",
    users: Annotated[int, typer.Option(min=1, help="seed: users")] = 100,
    orders_per_user: Annotated[int, typer.Option(min=1, help="seed: orders per user")] = 10,
    seed: Annotated[int, typer.Option(
        min=0, max=2**63 - 1, help="seed of the deterministic data set")] = 1,
) -> None:
    """Run one target server in the foreground until Ctrl-C or SIGTERM."""
    from harness.scenario import MAX_ORDERS

    lifecycle.as_a_server()
    if users * orders_per_user > MAX_ORDERS:  # the seeded set is built in memory
        raise UserError(f"--users × --orders-per-user must be at most {MAX_ORDERS:,} orders, "
                        f"got {users * orders_per_user:,}")
    t = _transport(transport)
    config = ServeConfig(host=host, port=port, store=store, amqp_url=amqp_url,
                         namespace=namespace,
                         seed=SeedSpec(users=users, orders_per_user=orders_per_user, seed=seed))
    try:
        t.serve()(config)
    except ValueError as exc:  # a bad --store spec
        raise UserError(str(exc)) from None


@app.command()
def verify(
    targets: Annotated[str, typer.Option(help="comma-separated targets")] = ",".join(TRANSPORTS),
    url: Annotated[list[str] | None, typer.Option(
        help="use a running target instead of starting one: NAME=URL (repeatable)")] = None,
    client: Annotated[list[str] | None, typer.Option(
        help="client variant per target: NAME=VARIANT (repeatable); default: every variant")] = None,
    amqp_url: AmqpUrl = DEFAULT_AMQP_URL,
    logs: Annotated[Path, typer.Option(help="folder for the targets' logs")] = Path("results/.logs"),
) -> None:
    """Start the targets (or use --url), run the conformance checks, print check × target."""
    from harness.stage.verify import run_verify

    names = [n.strip() for n in targets.split(",") if n.strip()]
    for n in names:
        _transport(n)
    ok = run_verify(names, urls=_pairs(url, "--url"), clients=_pairs(client, "--client"),
                    amqp_url=amqp_url, log_dir=logs)
    raise typer.Exit(0 if ok else 1)


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(help="one or more run folders (results/<run-id>)")],
    out: Annotated[Path | None, typer.Option(
        help="FILE.html to write, or a folder (any path not ending in .html; created if "
             "missing) to write report.html into; default: <run>/report.html for one run, "
             "<first run>/report-with-<other run ids joined by -and->.html for several (a "
             "run's own report.html is never replaced by a combined one). An "
             "existing file is replaced only if it is a commbench report")] = None,
) -> None:
    """Write one self-contained HTML report (tables, plots, findings, claims); print its path."""
    from reports.html import write_report

    typer.echo(write_report(runs, out))


@app.command()
def compare(
    run_a: Annotated[Path, typer.Argument(help="the baseline run folder")],
    run_b: Annotated[Path, typer.Argument(help="the run to judge against it")],
    fail_on: Annotated[list[str] | None, typer.Option(
        help="exit 1 when a figure moves past this, e.g. p99:+10% or throughput:-5% "
             "(repeatable; metrics p50 p90 p99 p999 max throughput error_rate cpu); a "
             "percentile with too few samples to judge is listed NOT CHECKED and changes "
             "the exit code neither way; so is an open-loop throughput when a target's "
             "intended rate differs between the runs by more than 1 % (offered load "
             "differs: throughput then follows the schedule, not the system)")] = None,
    noise: Annotated[float, typer.Option(
        help="noise band used when a run has one repetition (0.1 = ±10 %)")] = 0.10,
) -> None:
    """Print the change of every figure from RUN_A to RUN_B, marking changes beyond noise."""
    from reports.compare import compare as compare_runs

    text, code = compare_runs(run_a, run_b, fail_on or [], noise)
    typer.echo(text, nl=False)
    raise typer.Exit(code)


@app.command()
def run(
    scenario: Annotated[str, typer.Argument(help="scenario file, or a name in --scenarios-dir")],
    targets: Annotated[str | None, typer.Option(
        help='comma-separated targets, e.g. "rest,grpc" or "rest:httpx" (default: the scenario\'s)')] = None,
    rate: Annotated[float | None, typer.Option(help="override the open-loop rate (requests/s)")] = None,
    duration: Annotated[str | None, typer.Option(help='override the measured duration ("30s")')] = None,
    repetitions: Annotated[int | None, typer.Option(help="override the repetitions")] = None,
    processes: Annotated[int, typer.Option(
        help="generator processes (the schedule is split); at most 2 per CPU the generator "
             "may use, and what half the available memory holds (about 64 MB each)")] = 1,
    target_cpus: Annotated[str | None, typer.Option(help='pin targets to CPUs, e.g. "1"')] = None,
    load_cpus: Annotated[str | None, typer.Option(help='pin the load generator, e.g. "0"')] = None,
    concurrent: Annotated[bool, typer.Option(help="measure the targets together")] = False,
    results_dir: Annotated[Path, typer.Option(help="where result folders go")] = Path("results"),
    scenarios_dir: Annotated[Path, typer.Option(help="where names are looked up")] = Path("scenarios"),
    amqp_url: AmqpUrl = DEFAULT_AMQP_URL,
    report: Annotated[bool, typer.Option(help="write report.html into the result folder")] = False,
) -> None:
    """Measure the targets under a scenario and write results/<run-id>/."""
    from harness.run.command import run_command
    from harness.run.options import RunOptions, parse_cpus
    from harness.scenario import duration_option

    opts = RunOptions(scenario=scenario, targets=targets, rate=rate,
                      duration_s=duration_option(duration, "--duration"), repetitions=repetitions,
                      processes=processes, target_cpus=parse_cpus(target_cpus, "--target-cpus"),
                      load_cpus=parse_cpus(load_cpus, "--load-cpus"), concurrent=concurrent,
                      results_dir=results_dir, amqp_url=amqp_url, scenarios_dir=scenarios_dir)
    raise typer.Exit(run_command(opts, report=_write_report if report else None))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def locust(
    ctx: typer.Context,
    scenario: Annotated[str, typer.Argument(help="scenario file, or a name in --scenarios-dir")],
    target: Annotated[str, typer.Option(help='one target, e.g. "rest", "grpc", "rest:httpx"')],
    url: Annotated[str | None, typer.Option(help="drive a running target instead of starting one")] = None,
    web: Annotated[bool, typer.Option("--web/--headless", help="locust's web UI, or run headless")] = True,
    users: Annotated[int | None, typer.Option(
        "--users", "-u", help="users (default: the scenario's closed-loop users, else 10)")] = None,
    spawn_rate: Annotated[float | None, typer.Option(
        "--spawn-rate", "-r", help="users started per second (default: all in 1 s)")] = None,
    run_time: Annotated[str | None, typer.Option(
        "--run-time", "-t", help='e.g. "30s" (headless default: warm-up + duration)')] = None,
    warmup: Annotated[str | None, typer.Option(help='override the scenario\'s warm-up, e.g. "0s"')] = None,
    master: Annotated[bool, typer.Option(help="run a locust master (workers connect to it)")] = False,
    worker: Annotated[bool, typer.Option(help="run a locust worker of a master")] = False,
    master_host: Annotated[str, typer.Option(help="the master a worker connects to")] = "127.0.0.1",
    master_port: Annotated[int, typer.Option(
        min=1, max=65535, help="master's port (bind or connect)")] = 5557,
    expect_workers: Annotated[int, typer.Option(help="headless master: workers to wait for")] = 1,
    web_host: Annotated[str, typer.Option(help="web UI interface")] = "127.0.0.1",
    web_port: Annotated[int, typer.Option(min=1, max=65535, help="web UI port")] = 8089,
    target_cpus: Annotated[str | None, typer.Option(help='pin the target to CPUs, e.g. "1"')] = None,
    load_cpus: Annotated[str | None, typer.Option(help='pin locust to CPUs, e.g. "0"')] = None,
    results_dir: Annotated[Path, typer.Option(help="where result folders go")] = Path("results"),
    scenarios_dir: Annotated[Path, typer.Option(help="where names are looked up")] = Path("scenarios"),
    amqp_url: AmqpUrl = DEFAULT_AMQP_URL,
) -> None:
    """Drive one target with locust (web UI, headless, master/worker) through the project's
    clients; every locust test writes results/<run-id>/. Arguments after -- go to locust."""
    from harness.locust.command import LocustOptions, run_locust
    from harness.run.options import parse_cpus
    from harness.scenario import duration_option

    opts = LocustOptions(
        scenario=scenario, target=target, url=url, web=web, users=users, spawn_rate=spawn_rate,
        run_time=run_time, warmup_s=duration_option(warmup, "--warmup", allow_zero=True),
        master=master, worker=worker, master_host=master_host,
        master_port=master_port, expect_workers=expect_workers, web_host=web_host,
        web_port=web_port, results_dir=results_dir, scenarios_dir=scenarios_dir,
        amqp_url=amqp_url, target_cpus=parse_cpus(target_cpus, "--target-cpus"),
        load_cpus=parse_cpus(load_cpus, "--load-cpus"), extra=list(ctx.args))
    raise typer.Exit(run_locust(opts))


@app.command()
def clean(
    results_dir: Annotated[Path, typer.Option(help="where result folders go")] = Path("results"),
    finalise: Annotated[bool, typer.Option(
        "--finalise", help="keep what each abandoned run measured, as a partial run")] = False,
    remove: Annotated[bool, typer.Option("--remove", help="delete each abandoned run folder")] = False,
    amqp_url: Annotated[str, typer.Option(
        help="the broker of the runs' namespaces (they are deleted either way)")] = DEFAULT_AMQP_URL,
) -> None:
    """Find runs that were killed (SIGKILL) before they finished: report each, then finalise
    or remove it (asked on a terminal) and delete its broker namespaces."""
    from harness.run.abandoned import clean as clean_runs

    if finalise and remove:
        raise UserError("--finalise and --remove exclude each other")
    action = "finalise" if finalise else "remove" if remove else None
    ask = _ask_action if action is None and sys.stdin.isatty() and sys.stdout.isatty() else None
    raise typer.Exit(clean_runs(results_dir, amqp_url, action, ask, typer.echo))


def _ask_action(run: object) -> str:
    answer = typer.prompt("  [f]inalise, [r]emove or [k]eep it?", default="k")
    return {"f": "finalise", "r": "remove"}.get(answer.strip().lower()[:1], "keep")


@app.command()
def scenarios(
    folder: Annotated[Path, typer.Option("--dir", help="folder of scenario files")] = Path("scenarios"),
    schema: Annotated[bool, typer.Option(
        "--schema", help="print the JSON Schema of a scenario file (for an editor) instead")] = False,
) -> None:
    """List the scenarios with their descriptions (and any that do not load)."""
    from harness.scenario import list_scenarios, scenario_schema

    if schema:
        import json

        typer.echo(json.dumps(scenario_schema(), indent=2, ensure_ascii=False))
        return
    for path, sc in list_scenarios(folder):
        if isinstance(sc, Exception):
            typer.echo(f"{path.stem:<16} INVALID: {str(sc).splitlines()[0]}")
        else:
            typer.echo(f"{sc.name:<16} {sc.description}")


def _write_report(run: Path) -> Path:
    from reports.html import write_report

    return write_report(run)


def _transport(name: str):
    try:
        return get_transport(name)
    except KeyError as exc:
        raise UserError(exc.args[0]) from None


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values or []:
        name, sep, rest = v.partition("=")
        if not sep or not rest:
            raise UserError(f"{option} takes NAME=VALUE, got {v!r}")
        _transport(name)
        out[name] = rest
    return out


# typer ships its own copy of click; catch both so a usage error is never a traceback.
_EXITS: tuple[type[BaseException], ...] = (typer.Exit, click.exceptions.Exit)
_USAGE_ERRORS: tuple[type[BaseException], ...] = (click.ClickException,)
_ABORTS: tuple[type[BaseException], ...] = (typer.Abort, click.exceptions.Abort)
try:
    from typer._click import exceptions as _typer_click

    _USAGE_ERRORS += (_typer_click.ClickException,)
except ImportError:  # an older typer that uses click itself
    pass


def _invoke(args: list[str]) -> object:
    """Run the command, letting a KeyboardInterrupt through: typer's own main would turn it
    into exit code 130 whatever the signal was."""
    command = typer.main.get_command(app)
    with command.make_context("commbench", args) as ctx:
        return command.invoke(ctx)


def _interrupt(exc: BaseException) -> lifecycle.Interrupt:
    """The Interrupt behind an exception (click turns a KeyboardInterrupt into Abort)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, lifecycle.Interrupt):
            return seen
        seen = seen.__cause__ or seen.__context__
    return lifecycle.Interrupt()


def main() -> None:
    """Entry point: one-line errors, exit 2 for user errors, 128 + the signal when a signal
    (or a closed stdout) stopped the command: 130 Ctrl-C, 129 hang-up, 141 closed stdout,
    143 SIGTERM."""
    lifecycle.stop_on_signals()
    lifecycle.amqp_logs_one_line("")
    try:
        rv = _invoke(sys.argv[1:])
    except _EXITS as exc:
        sys.exit(exc.exit_code)
    except _USAGE_ERRORS as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (*_ABORTS, KeyboardInterrupt) as exc:
        stop = _interrupt(exc)
        sys.stderr.write(f"commbench: {stop.reason}" + (f"; {stop.note}" if stop.note else "")
                         + "\n")
        sys.exit(lifecycle.exit_code(stop))
    except BrokenPipeError:  # a writer that bypassed the guarded stdout (click may)
        lifecycle.stdout_closed()
        stop = lifecycle.Interrupt(signal.SIGPIPE)
        sys.stderr.write(f"commbench: {stop.reason}\n")
        sys.exit(lifecycle.exit_code(stop))
    except (UserError, ServeError, ReportError) as exc:
        sys.stderr.write(f"commbench: {exc}\n")
        sys.exit(2)
    except OrderError as exc:
        sys.stderr.write(f"commbench: {exc.kind}: {exc}\n")
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
