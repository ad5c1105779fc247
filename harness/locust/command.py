"""`commbench locust`: the same targets, driven by locust (web UI, headless, master/worker).

Starts the target (and, for the queue, the broker) unless --url names a running one, holds
it to the conformance gate as `commbench run` does, then runs locust as a *subprocess* on
harness/locust/locustfile.py: locust monkey-patches the standard library with gevent when it is
imported, and that must never reach the rest of commbench. Locust runs in its own session
with a parent-death signal; Ctrl-C (or SIGTERM, a hang-up) here sends it SIGTERM, which locust turns
into a clean shutdown that writes the result folder of a running test, and then the target
is stopped (and the queue target's broker namespace deleted). Nothing outlives the command.

When locust exits, every warning of the result folders it wrote is printed, and the exit
code is 1 if a test measured nothing (locust's own code otherwise).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.environment import environment
from harness.errors import UserError
from harness.lifecycle import child_setup, signals_ignored, stop_group
from harness.locust.checks import check_locust_arguments, check_options
from harness.locust.node import CONFIG_ENV, LocustConfig
from harness.scenario import (
    Scenario,
    TargetRef,
    find_scenario,
    load_scenario,
    parse_target,
)
from harness.stage.reach import Reach
from harness.stage.stage import GateFailed, Stage
from targets.redact import redact
from targets.serving import DEFAULT_AMQP_URL

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
STOP_TIMEOUT_S = 20.0  # locust's own shutdown: final seconds from workers, the result folder


@dataclass
class LocustOptions:
    scenario: str
    target: str
    url: str | None = None
    pids: dict[str, str] = field(default_factory=dict)  # --pid NAME=PID[,PID…], with --url
    web: bool = True
    users: int | None = None
    spawn_rate: float | None = None
    run_time: str | None = None
    warmup_s: float | None = None
    master: bool = False
    worker: bool = False
    master_host: str = "127.0.0.1"
    master_port: int = 5557
    expect_workers: int = 1
    web_host: str = "127.0.0.1"
    web_port: int = 8089
    results_dir: Path = Path("results")
    scenarios_dir: Path = Path("scenarios")
    amqp_url: str = DEFAULT_AMQP_URL
    target_cpus: tuple[int, ...] = ()
    load_cpus: tuple[int, ...] = ()
    extra: list[str] = field(default_factory=list)

    def arguments(self) -> dict[str, Any]:
        d = asdict(self)
        d["results_dir"], d["scenarios_dir"] = str(self.results_dir), str(self.scenarios_dir)
        d["target_cpus"], d["load_cpus"] = list(self.target_cpus), list(self.load_cpus)
        return d


def default_users(sc: Scenario) -> int:
    """A closed-loop scenario's users; 10 for an open-loop one (locust has no open loop)."""
    return sc.load.users if sc.load.model == "closed" and sc.load.users else 10


def default_run_time(sc: Scenario, warmup_s: float) -> str:
    """Warm-up plus the scenario's measured duration, in whole seconds (locust's format)."""
    return f"{math.ceil(warmup_s + sc.duration_s)}s"


def locust_command(opts: LocustOptions, sc: Scenario, url: str | None) -> list[str]:
    """The `python -m locust` command line for these options."""
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    if opts.worker:
        return [*cmd, "--worker", "--master-host", opts.master_host,
                "--master-port", str(opts.master_port), *opts.extra]
    users = opts.users if opts.users is not None else default_users(sc)
    rate = opts.spawn_rate if opts.spawn_rate is not None else float(users)
    warmup = sc.warmup_s if opts.warmup_s is None else opts.warmup_s
    cmd += ["--host", url or "", "--users", str(users), "--spawn-rate", f"{rate:g}"]
    if opts.master:
        cmd += ["--master", "--master-bind-port", str(opts.master_port)]
    if opts.web:
        cmd += ["--web-host", opts.web_host, "--web-port", str(opts.web_port)]
        if opts.run_time:
            cmd += ["--run-time", opts.run_time]
    else:
        cmd += ["--headless", "--run-time", opts.run_time or default_run_time(sc, warmup)]
        if opts.master:
            cmd += ["--expect-workers", str(opts.expect_workers)]
    return [*cmd, *opts.extra]


def run_locust(opts: LocustOptions) -> int:
    """Run the command; returns locust's exit code (KeyboardInterrupt after a clean stop)."""
    if opts.master and opts.worker:
        raise UserError("--master and --worker exclude each other")
    path = find_scenario(opts.scenario, opts.scenarios_dir)
    sc = load_scenario(path)
    try:
        ref = parse_target(opts.target)
    except KeyError as exc:
        raise UserError(f"--target: {exc.args[0]}") from None
    reach = Reach.from_options({ref.transport: opts.url} if opts.url else {}, opts.pids)
    reach.check([ref])
    check_options(opts, sc.warmup_s if opts.warmup_s is None else opts.warmup_s, sc.name)
    if opts.web and not opts.worker:
        _check_port_free(opts.web_host, opts.web_port, "--web-port")
    if opts.master:
        _check_port_free("", opts.master_port, "--master-port")
    if opts.extra:  # locust's own parser judges what goes to it unchanged, before any start
        check_locust_arguments(locust_command(opts, sc, opts.url or "http://127.0.0.1:1"))

    stack = contextlib.ExitStack()
    try:
        url: str | None = opts.url
        pids: list[int] = []
        conformance = None
        namespace = None
        if not opts.worker:
            url, pids, namespace, conformance = _stage_target(stack, opts, sc, ref)
            pids = pids or list(reach.probed(ref))
            _say(f"{ref.name} at {redact(url)}: conformance {conformance}")
        config = LocustConfig(
            scenario_file=str(path.resolve()), transport=ref.transport, variant=ref.variant,
            server=ref.server, url=url, reach=reach.record(ref),
            results_dir=str(opts.results_dir.resolve()), warmup_s=opts.warmup_s,
            target_pids=tuple(pids), target_started=opts.url is None, target_cpus=opts.target_cpus,
            load_cpus=opts.load_cpus,
            arguments={**opts.arguments(), "url": url, "conformance": conformance},
            environment={} if opts.worker else environment(opts.target_cpus, opts.load_cpus),
            namespace=namespace,
            manifest=None if opts.worker else _manifest(stack))
        cmd = locust_command(opts, sc, url)
        if opts.web and not opts.worker:
            _say(f"locust web UI: http://{opts.web_host}:{opts.web_port}/ (Ctrl-C to stop)")
        code = 0
        try:
            code = _run(cmd, config, opts.load_cpus)
        finally:
            if config.manifest is not None:
                empty = report_results(Path(config.manifest))
                if empty and code == 0:
                    code = 1
        return code
    finally:
        with signals_ignored():
            stack.close()


def _manifest(stack: contextlib.ExitStack) -> str:
    """A file the locust process appends one line to per result folder it writes."""
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="commbench-locust-")))
    return str(folder / "results.jsonl")


def report_results(manifest: Path) -> bool:
    """Print where each test's result went and its warnings; True if one measured nothing."""
    if not manifest.exists():
        return False
    empty = False
    for line in manifest.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        measured = int(entry.get("measured") or 0)
        _say(f"results in {entry.get('path')} ({entry.get('status')}, {measured} requests "
             "measured)")
        for warning in entry.get("warnings") or []:
            _say(f"warning: {warning}")
        if measured == 0:
            empty = True
            _say("error: this test measured nothing")
    return empty


def _stage_target(stack: contextlib.ExitStack, opts: LocustOptions, sc: Scenario,
                  ref: TargetRef) -> tuple[str, list[int], str | None, str]:
    """Stand the target up (or adopt --url) and gate it; the stack takes it down. Returns
    its URL, the pids to probe (the broker's too), its broker namespace and the gate's
    summary."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    # the runner's style (cb-<run-id>-<token>-<target>): unique on a shared broker
    namespace = f"cb-locust-{stamp}-{uuid.uuid4().hex[:8]}-{ref.name}"
    data = None
    if opts.url is None and (sc.data.store != "memory" or sc.topology != "single"):
        data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="commbench-locust-")))
    if sc.faults:
        _say("note: locust runs the scenario's topology but injects none of its faults; "
             "commbench run injects them on their timeline")
    log_dir = opts.results_dir / ".logs"
    stage = stack.enter_context(Stage(log_dir, amqp_url=opts.amqp_url, data_dir=data, note=_say))
    if opts.url is None:
        _say(f"starting {ref.name} (log: {log_dir / f'{ref.name}-locust.log'}) …")
    target = stage.start(ref, name=f"{ref.name}-locust", namespace=namespace,
                         seed=sc.data.seed_spec(), store=sc.data.store, cpus=opts.target_cpus,
                         url=opts.url, topology=sc.topology)
    try:
        conformance = stage.gate(target, sc.data.seed_spec(), sc.load.timeout_s)
    except GateFailed as exc:
        raise UserError(f"{ref.name} at {redact(target.url)}: {exc}") from None
    pids = [s.pid for s in target.services.values()]
    pids += stage.broker_pids(target) or []
    return target.url, pids, target.namespace, conformance


def _run(cmd: Sequence[str], config: LocustConfig, load_cpus: Sequence[int]) -> int:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env[CONFIG_ENV] = config.to_env()
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(list(cmd), env=env, stdin=subprocess.DEVNULL,
                            start_new_session=True,
                            # SIGTERM, not SIGKILL: if commbench dies, locust still writes what it measured.
                            preexec_fn=lambda: child_setup(load_cpus, signal.SIGTERM))
    try:
        with _sigint_to_interrupt():
            return proc.wait()
    finally:
        with signals_ignored():
            # SIGTERM to locust alone: it shuts down cleanly (writes a running test's result).
            stop_group(proc, STOP_TIMEOUT_S, polite=(signal.SIGTERM,), whole_group=False)


@contextlib.contextmanager
def _sigint_to_interrupt() -> Iterator[None]:
    """Ctrl-C while waiting for locust is a KeyboardInterrupt (also when SIGINT was ignored)."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _check_port_free(host: str, port: int, option: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise UserError(f"{option} {port}: cannot listen on {host or '*'}:{port} "
                            f"({exc.strerror}); choose another port") from None


def _say(text: str) -> None:
    sys.stderr.write(f"commbench: {text}\n")
    sys.stderr.flush()
