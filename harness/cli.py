"""The `commbench` command line. Commands are thin: they parse options, call one harness
module, and turn user-fixable errors into one line and exit code 2."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from harness import lifecycle
from harness.errors import UserError
from harness.sweep.cli import sweep
from targets.core.seed import SeedSpec
from targets.registry import TRANSPORTS, get_transport
from targets.serving import (
    AMQP_URL_ENV,
    DEFAULT_AMQP_URL,
    DEFAULT_HOP_TIMEOUT_S,
    TOPOLOGIES,
    ServeConfig,
    parse_downstream,
)

app = typer.Typer(
    help="Benchmark and compare microservice communication: REST, gRPC and a message queue.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

AmqpUrl = Annotated[str, typer.Option(help="RabbitMQ to use; when it does not answer, "
                                            "commbench starts a private broker")]

app.command()(sweep)  # harness/sweep/cli.py


@app.command()
def serve(
    transport: Annotated[str, typer.Argument(help=f"one of: {', '.join(TRANSPORTS)}")],
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535,
                                      help="0 lets the OS choose; the URL is printed")] = 0,
    store: Annotated[str, typer.Option(help="memory, sqlite:PATH or postgresql://…")] = "memory",
    amqp_url: Annotated[str, typer.Option(
        envvar=AMQP_URL_ENV, help="broker for the queue target")] = DEFAULT_AMQP_URL,
    namespace: Annotated[str, typer.Option(help="prefix of queue and exchange names")] = "commbench",
    users: Annotated[int, typer.Option(min=1, help="seed: users")] = 100,
    orders_per_user: Annotated[int, typer.Option(min=1, help="seed: orders per user")] = 10,
    seed: Annotated[int, typer.Option(
        min=0, max=2**63 - 1, help="seed of the deterministic data set")] = 1,
    role: Annotated[str, typer.Option(help="the service to run: order (the edge clients call), "
                                           "payment, inventory or notification")] = "order",
    topology: Annotated[str, typer.Option(help=f"one of: {', '.join(TOPOLOGIES)}")] = "single",
    downstream: Annotated[list[str] | None, typer.Option(
        help="chain edge: ROLE=URL of a downstream service (repeatable)")] = None,
    hop_timeout: Annotated[float, typer.Option(
        min=0.001, help="chain edge: seconds each downstream call may take")] = DEFAULT_HOP_TIMEOUT_S,
    server: Annotated[str | None, typer.Option(
        help="server variant, e.g. granian for rest (default: the transport's first)")] = None,
    control: Annotated[str, typer.Option(
        help="Unix socket path for the fault control channel (delay, errors); none by default")]
    = "",
    policies: Annotated[str, typer.Option(
        help="chain edge: resilience policies as JSON, a scenario's policies table "
             '(e.g. \'{"timeout": "300ms", "retries": {"kind": "fixed"}}\'); none by default')]
    = "",
) -> None:
    """Run one target server in the foreground until Ctrl-C or SIGTERM."""
    from harness.scenario.model import MAX_ORDERS
    from harness.scenario.policies import policies_option

    lifecycle.as_a_server()
    if users * orders_per_user > MAX_ORDERS:  # the seeded set is built in memory
        raise UserError(f"--users × --orders-per-user must be at most {MAX_ORDERS:,} orders, "
                        f"got {users * orders_per_user:,}")
    t = _transport(transport)
    if role not in t.roles:
        raise UserError(f"{transport} serves the roles {', '.join(t.roles)}, not {role!r}")
    if topology not in TOPOLOGIES:
        raise UserError(f"unknown topology {topology!r}; choose one of: {', '.join(TOPOLOGIES)}")
    try:
        downstreams = tuple(parse_downstream(d) for d in downstream or [])
    except ValueError as exc:
        raise UserError(str(exc)) from None
    config = ServeConfig(host=host, port=port, store=store, amqp_url=amqp_url,
                         namespace=namespace,
                         seed=SeedSpec(users=users, orders_per_user=orders_per_user, seed=seed),
                         role=role, topology=topology, downstreams=downstreams,
                         hop_timeout_s=hop_timeout, control=control,
                         policies=policies_option(policies))
    try:
        main = t.serve(server)
    except KeyError as exc:
        raise UserError(exc.args[0]) from None
    try:
        main(config)
    except ValueError as exc:  # a bad --store spec
        raise UserError(str(exc)) from None


@app.command()
def verify(
    targets: Annotated[str, typer.Option(
        help='comma-separated targets, e.g. "rest,grpc" or "rest@granian" (a server '
             'variant); default: every one that serves --topology')] = "",
    url: Annotated[list[str] | None, typer.Option(
        help="use a running target instead of starting one: NAME=URL (repeatable)")] = None,
    client: Annotated[list[str] | None, typer.Option(
        help="client variant per target: NAME=VARIANT (repeatable); default: every variant")] = None,
    amqp_url: AmqpUrl = DEFAULT_AMQP_URL,
    logs: Annotated[Path, typer.Option(help="folder for the targets' logs")] = Path("results/.logs"),
    topology: Annotated[str, typer.Option(
        help="single: one order service; chain: the order flow (edge, payment, inventory), "
             "with the flow's checks")] = "single",
    store: Annotated[str, typer.Option(help="memory, sqlite or postgresql://…")] = "memory",
) -> None:
    """Start the targets (or use --url), run the conformance checks, print check × target."""
    from harness.stage.verify import run_verify

    names = [n.strip() for n in targets.split(",") if n.strip()]
    for n in names:
        _transport(n.partition("@")[0].partition(":")[0])
    ok = run_verify(names, urls=_pairs(url, "--url"), clients=_pairs(client, "--client"),
                    amqp_url=amqp_url, log_dir=logs, topology=topology, store=store)
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
    """Write one self-contained HTML report (tables, plots, findings, claims) of runs, or of
    one sweep folder; print its path."""
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
        help='comma-separated targets, e.g. "rest,grpc", "rest:httpx" (a client variant) or '
             '"rest@granian" (a server variant) (default: the scenario\'s)')] = None,
    rate: Annotated[float | None, typer.Option(help="override the open-loop rate (requests/s)")] = None,
    duration: Annotated[str | None, typer.Option(help='override the measured duration ("30s")')] = None,
    repetitions: Annotated[int | None, typer.Option(help="override the repetitions")] = None,
    processes: Annotated[str, typer.Option(
        help="generator processes (the schedule is split); at most 2 per CPU the generator "
             "may use, and what half the available memory holds (about 64 MB each); auto: "
             "one per core not given to targets (--target-cpus), at least 1")] = "1",
    target_cpus: Annotated[str | None, typer.Option(help='pin targets to CPUs, e.g. "1"')] = None,
    load_cpus: Annotated[str | None, typer.Option(help='pin the load generator, e.g. "0"')] = None,
    concurrent: Annotated[bool, typer.Option(help="measure the targets together")] = False,
    results_dir: Annotated[Path, typer.Option(help="where result folders go")] = Path("results"),
    scenarios_dir: Annotated[Path, typer.Option(help="where names are looked up")] = Path("scenarios"),
    amqp_url: AmqpUrl = DEFAULT_AMQP_URL,
    report: Annotated[bool, typer.Option(help="write report.html into the result folder")] = False,
    url: Annotated[list[str] | None, typer.Option(
        help="measure a running target instead of starting one: NAME=URL (repeatable; a "
             "queue target as amqp://…/?namespace=NS)")] = None,
    pid: Annotated[list[str] | None, typer.Option(
        help="with --url, the process whose tree's CPU and memory to probe: NAME=PID[,PID…] "
             "(repeatable)")] = None,
    fault: Annotated[list[str] | None, typer.Option(
        help="inject a fault during the measured window, added to the scenario's: "
             "SERVICE:KIND[=PARAMS]@AT+DURATION, e.g. payment:pause@10s+5s, "
             "payment:delay=2s,jitter=200ms@10s+10s, payment:errors=0.2@5s+10s, "
             "broker@10s+5s (repeatable)")]
    = None,
    store: Annotated[str | None, typer.Option(help="replace the scenario's store: memory, sqlite "
                                                   "or postgresql://… (eventsourced)")] = None,
) -> None:
    """Measure the targets under a scenario and write results/<run-id>/."""
    from harness.run.command import run_command
    from harness.run.options import RunOptions, parse_cpus, parse_processes
    from harness.scenario import duration_option, parse_fault_option

    n_processes = parse_processes(processes)
    opts = RunOptions(scenario=scenario, targets=targets, rate=rate,
                      duration_s=duration_option(duration, "--duration"), repetitions=repetitions,
                      processes=n_processes or 1, processes_auto=n_processes is None,
                      target_cpus=parse_cpus(target_cpus, "--target-cpus"),
                      load_cpus=parse_cpus(load_cpus, "--load-cpus"), concurrent=concurrent,
                      results_dir=results_dir, amqp_url=amqp_url, scenarios_dir=scenarios_dir,
                      urls=_pairs(url, "--url"), pids=_pairs(pid, "--pid"),
                      faults=tuple(parse_fault_option(f) for f in fault or []), store=store)
    raise typer.Exit(run_command(opts, report=_write_report if report else None))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def locust(
    ctx: typer.Context,
    scenario: Annotated[str, typer.Argument(help="scenario file, or a name in --scenarios-dir")],
    target: Annotated[str, typer.Option(
        help='one target, e.g. "rest", "grpc", "rest:httpx", "rest@granian"')],
    url: Annotated[str | None, typer.Option(
        help="drive a running target instead of starting one: NAME=URL as run and verify take "
             "it, or the URL alone")] = None,
    pid: Annotated[str | None, typer.Option(
        help="with --url, the process whose tree's CPU and memory to probe: NAME=PID[,PID…]")] = None,
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
    from harness.locust.checks import one_url
    from harness.locust.command import LocustOptions, run_locust
    from harness.run.options import parse_cpus
    from harness.scenario import duration_option

    opts = LocustOptions(
        scenario=scenario, target=target, url=one_url(url, target),
        pids=_pairs([pid] if pid else [], "--pid"), web=web, users=users, spawn_rate=spawn_rate,
        run_time=run_time, warmup_s=duration_option(warmup, "--warmup", allow_zero=True),
        master=master, worker=worker, master_host=master_host,
        master_port=master_port, expect_workers=expect_workers, web_host=web_host,
        web_port=web_port, results_dir=results_dir, scenarios_dir=scenarios_dir,
        amqp_url=amqp_url, target_cpus=parse_cpus(target_cpus, "--target-cpus"),
        load_cpus=parse_cpus(load_cpus, "--load-cpus"), extra=list(ctx.args))
    raise typer.Exit(run_locust(opts))


@app.command()
def seed(
    users: Annotated[int, typer.Option(min=1, help="seed: users")] = 100,
    orders_per_user: Annotated[int, typer.Option(min=1, help="seed: orders per user")] = 10,
    seed: Annotated[int, typer.Option(min=0, help="seed of the deterministic data set")] = 1,
    scenario: Annotated[str | None, typer.Option(
        help="take users, orders per user and seed from this scenario's [data] instead")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl: one order per line; json: one "
                                                      "array")] = "jsonl",
    catalogue: Annotated[bool, typer.Option(
        "--catalogue", help="write the catalogue (SKU → unit price in cents) instead")] = False,
    out: Annotated[Path | None, typer.Option(help="file to write (default: stdout)")] = None,
    scenarios_dir: Annotated[Path, typer.Option(help="where names are looked up")] = Path("scenarios"),
) -> None:
    """Write the seed orders (or the catalogue) an outside implementation loads so that
    lookups hit: the same orders, ids included, that `commbench serve` seeds."""
    import json

    from targets.core.model import CATALOGUE
    from targets.core.seed import seed_records

    if fmt not in ("jsonl", "json"):
        raise UserError(f"--format takes jsonl or json, got {fmt!r}")
    spec = SeedSpec(users=users, orders_per_user=orders_per_user, seed=seed)
    if scenario is not None:
        from harness.scenario import find_scenario, load_scenario

        spec = load_scenario(find_scenario(scenario, scenarios_dir)).data.seed_spec()
    try:
        f = open(out, "w", encoding="utf-8") if out is not None else sys.stdout
    except OSError as exc:
        raise UserError(f"--out {out}: {exc.strerror}") from None
    with f if out is not None else contextlib.nullcontext(f):
        if catalogue:
            f.write(json.dumps(CATALOGUE, indent=2 if fmt == "json" else None) + "\n")
        elif fmt == "json":
            json.dump(list(seed_records(spec)), f, indent=1)
            f.write("\n")
        else:
            for record in seed_records(spec):
                f.write(json.dumps(record, separators=(",", ":")) + "\n")


@app.command()
def clean(
    results_dir: Annotated[Path, typer.Option(help="where result folders go")] = Path("results"),
    finalise: Annotated[bool, typer.Option(
        "--finalise", help="keep what each abandoned run measured, as a partial run")] = False,
    remove: Annotated[bool, typer.Option("--remove", help="delete each abandoned run folder")] = False,
    amqp_url: Annotated[str, typer.Option(
        help="the broker of the runs' namespaces (they are deleted either way)")] = DEFAULT_AMQP_URL,
    store: Annotated[str | None, typer.Option(help="the PostgreSQL of the runs' schemas")] = None,
) -> None:
    """Find runs that were killed (SIGKILL) before they finished: report each, then finalise
    or remove it (asked on a terminal) and delete its broker namespaces and PostgreSQL schemas."""
    from harness.run.abandoned import clean as clean_runs

    if finalise and remove:
        raise UserError("--finalise and --remove exclude each other")
    action = "finalise" if finalise else "remove" if remove else None
    ask = _ask_action if action is None and sys.stdin.isatty() and sys.stdout.isatty() else None
    raise typer.Exit(clean_runs(results_dir, amqp_url, action, ask, typer.echo, store))


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
    from harness.scenario.files import scenario_folder

    if schema:
        import json

        typer.echo(json.dumps(scenario_schema(), indent=2, ensure_ascii=False))
        return
    for path, sc in list_scenarios(scenario_folder(folder)):
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


def main() -> None:
    """Entry point (harness.entry: one-line errors, exit codes per signal)."""
    from harness.entry import run_app

    run_app(app)


if __name__ == "__main__":
    main()
