"""What `commbench run` was asked to do, and what it hands back."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.lifecycle import Interrupt
from harness.scenario import FaultSpec, TargetRef, parse_target
from targets.redact import redact
from targets.serving import DEFAULT_AMQP_URL


@dataclass
class RunOptions:
    scenario: str
    targets: str | None = None
    rate: float | None = None
    duration_s: float | None = None
    repetitions: int | None = None
    processes: int = 1  # with processes_auto: resolved by the run (auto_processes)
    processes_auto: bool = False  # --processes auto
    target_cpus: tuple[int, ...] = ()
    load_cpus: tuple[int, ...] = ()
    concurrent: bool = False
    results_dir: Path = Path("results")
    amqp_url: str = DEFAULT_AMQP_URL
    scenarios_dir: Path = Path("scenarios")
    faults: tuple[FaultSpec, ...] = ()  # --fault, added to the scenario's
    urls: dict[str, str] = field(default_factory=dict)  # --url: transport → running target
    pids: dict[str, str] = field(default_factory=dict)  # --pid: transport → "PID[,PID…]"
    store: str | None = None  # --store: replaces the scenario's data.store

    def check_store(self, transports: list[str]) -> None:
        """--store before anything starts: every target takes it, and a database answers."""
        from harness.stage.postgres import check_reachable
        from harness.stage.stage import store_kind
        from targets.registry import get_transport

        if self.store is None:
            return
        kind = store_kind(self.store)
        for name in transports:
            if kind not in get_transport(name).stores:
                raise UserError(f"--store: {name} takes the stores "
                                f"{', '.join(get_transport(name).stores)}, not {kind!r}")
        if kind == "postgresql":
            check_reachable(self.store)

    def arguments(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "targets": self.targets, "rate": self.rate,
                "duration": self.duration_s, "repetitions": self.repetitions,
                "processes": "auto" if self.processes_auto else self.processes,
                "target_cpus": list(self.target_cpus),
                "load_cpus": list(self.load_cpus), "concurrent": self.concurrent,
                "results_dir": str(self.results_dir), "amqp_url": redact(self.amqp_url),
                "url": {k: redact(v) for k, v in self.urls.items()} or None,
                "pid": dict(self.pids) or None,
                "store": redact(self.store) if self.store else None}


@dataclass
class RunOutcome:
    path: Path
    status: str
    rows: list[dict[str, Any]]
    failed: list[str]
    warnings: list[str]


def parse_targets_option(text: str | None) -> tuple[TargetRef, ...] | None:
    """--targets "rest,grpc:grpcio,rest@granian" → refs (None: the scenario's own)."""
    if not text:
        return None
    try:
        targets = tuple(parse_target(t) for t in text.split(",") if t.strip())
    except KeyError as exc:
        raise UserError(f"--targets: {exc.args[0]}") from None
    if not targets:
        raise UserError("--targets: name at least one target")
    for n, ref in enumerate(targets):
        if ref in targets[:n]:
            raise UserError(f"--targets: {ref.name} is listed twice")
    return targets


class Interrupted(Interrupt):
    """Ctrl-C or another stopping signal: the partial result was written to `outcome.path`."""

    def __init__(self, outcome: RunOutcome, signum: int = signal.SIGINT) -> None:
        super().__init__(signum)
        self.outcome = outcome


PROCESS_MB = 64  # resident memory of one generator process (measured: about 62 MB)
PROCESSES_PER_CPU = 2  # beyond this, processes only take turns on a CPU


def parse_processes(text: str) -> int | None:
    """--processes: a count ≥ 1, or "auto" (None: the run picks, see auto_processes)."""
    if text.strip().lower() == "auto":
        return None
    try:
        n = int(text)
    except ValueError:
        raise UserError(f"--processes takes a number of processes or auto, got {text!r}") \
            from None
    if n < 1:
        raise UserError(f"--processes must be at least 1, got {n}")
    return n


def load_cores(target_cpus: tuple[int, ...], load_cpus: tuple[int, ...],
               targets_local: bool = True) -> tuple[int, ...]:
    """The CPUs the generator may use that no target was given: --load-cpus (default: every
    CPU of this process) minus --target-cpus. Targets started here without --target-cpus
    may run on every CPU, so none is free of them; targets all reached by URL take none."""
    allowed = load_cpus or tuple(sorted(os.sched_getaffinity(0)))
    if not targets_local:
        return allowed
    taken = set(target_cpus or os.sched_getaffinity(0))
    return tuple(c for c in allowed if c not in taken)


def auto_processes(target_cpus: tuple[int, ...], load_cpus: tuple[int, ...],
                   targets_local: bool = True) -> int:
    """--processes auto: one generator process per core not given to targets (one process
    per core: more only take turns), at least 1, within what memory allows."""
    return max(1, min(len(load_cores(target_cpus, load_cpus, targets_local)),
                      _limits(load_cpus)[1]))


def _limits(load_cpus: tuple[int, ...]) -> tuple[int, int, int, float]:
    """(by CPU, by memory, CPUs, bytes available): the most processes each allows."""
    import psutil

    cpus = len(load_cpus) or len(os.sched_getaffinity(0))
    available = psutil.virtual_memory().available
    return (PROCESSES_PER_CPU * cpus, max(1, int(available / 2 / (PROCESS_MB * 2**20))), cpus,
            available)


def settle_processes(opts: RunOptions, targets_local: bool) -> str | None:
    """Resolve --processes auto into `opts.processes` and check the count; returns the line
    the run prints about an automatic choice (None: the count was given)."""
    if opts.processes_auto:
        free = load_cores(opts.target_cpus, opts.load_cpus, targets_local)
        opts.processes = auto_processes(opts.target_cpus, opts.load_cpus, targets_local)
        where = (f"CPU(s) {','.join(map(str, free))} not given to targets" if free else
                 "no CPU free of targets (pin them with --target-cpus)")
        note = f"--processes auto: {opts.processes} generator process(es), {where}"
    else:
        note = None
    check_processes(opts.processes, opts.load_cpus)
    return note


def spare_cores_hint(opts: RunOptions, targets_local: bool) -> str:
    """What a saturation warning adds when cores free of targets run no generator process:
    one load core may not outrun a target, and more processes there may keep up."""
    free = load_cores(opts.target_cpus, opts.load_cpus, targets_local)
    n = auto_processes(opts.target_cpus, opts.load_cpus, targets_local)
    if n <= opts.processes:
        return ""
    return (f"; {len(free)} CPU(s) not given to targets ran {opts.processes} generator "
            f"process(es): more (--processes auto: {n}) may keep up")


def check_processes(n: int, load_cpus: tuple[int, ...] = ()) -> None:
    """--processes within what the machine can run: at most PROCESSES_PER_CPU per CPU the
    generator may use, and half the available memory at PROCESS_MB each."""
    by_cpu, by_memory, cpus, available = _limits(load_cpus)
    if n < 1:
        raise UserError(f"--processes must be at least 1, got {n}")
    if n <= min(by_cpu, by_memory):
        return
    where = "--load-cpus" if load_cpus else "this machine"
    if by_cpu <= by_memory:
        why = (f"the load generator may use {cpus} CPU(s) ({where}), and more than "
               f"{PROCESSES_PER_CPU} processes per CPU only take turns, adding scheduling "
               "delay to the latency they measure")
    else:
        why = (f"each process takes about {PROCESS_MB} MB and {available / 2**30:.1f} GB is "
               "available; half of it is the most the generator may take")
    raise UserError(f"--processes {n}: at most {min(by_cpu, by_memory)} here: {why}")


def parse_cpus(text: str | None, option: str) -> tuple[int, ...]:
    """'1', '0,1' or '0-1' → CPU numbers this process may use; UserError otherwise."""
    if not text:
        return ()
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            cpus.update(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    except ValueError:
        raise UserError(f"{option} takes CPU numbers such as 1, 0,1 or 0-1; got {text!r}") \
            from None
    allowed = os.sched_getaffinity(0)
    if not cpus or not cpus <= allowed:
        raise UserError(f"{option} {text!r}: this machine offers CPUs "
                        f"{','.join(map(str, sorted(allowed)))}")
    return tuple(sorted(cpus))
