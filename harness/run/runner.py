"""Orchestrates `commbench run`: for each repetition and target (the target order rotates
from one repetition to the next, so no transport always goes first), stand the target up on
the stage, pass the conformance gate, spawn the generator processes, warm up, measure, stop,
and write the result folder. Every exit path stops everything; Ctrl-C (and SIGTERM, a hang-up
or a closed stdout, which the CLI turns into the same KeyboardInterrupt) keeps what was
measured, marks the run partial and re-raises so the CLI exits 128 + the signal.

What SIGKILL leaves is finishable: run.json says `running` from the start and is rewritten as each
target run starts and ends, and every broker namespace is recorded in the folder before its target
starts (harness.run.abandoned); a later `run` reports it and `commbench clean` finalises or removes it.

Each merged second goes to the same listeners in turn: the results writer, the measured
window (harness.run.window: rates and the saturation rule) and the live progress view.

Every run has a random token in its queue namespace (`cb-<run-id>-<token>-<target>-r<rep>`),
so two runs on one broker never share a queue, even when started in the same second.
"""

from __future__ import annotations

import contextlib
import multiprocessing.connection as mpc
import os
import shutil
import time
import uuid
from functools import partial
from typing import Any

from rich.console import Console

from harness.environment import environment
from harness.errors import UserError
from harness.faults.cascade import Cascade
from harness.faults.files import write_fault_files
from harness.faults.injector import Injector
from harness.lifecycle import Interrupt, signals_ignored
from harness.load.engine import EngineConfig
from harness.load.recorder import NS, MergedSecond, Merger, SecondListener
from harness.load.workers import Message, WorkerPool, WorkerSpec
from harness.run import abandoned
from harness.run.options import (
    Interrupted,
    RunOptions,
    RunOutcome,
    parse_targets_option,
    settle_processes,
    spare_cores_hint,
)
from harness.run.probes import Meter, ProcessProbe
from harness.run.progress import ProgressListener, ProgressView
from harness.run.results import RUNNING, ResultWriter, run_id_for
from harness.run.settle import settle
from harness.run.target_run import TargetRun, probe_notes, run_meta
from harness.scenario import find_scenario, load_scenario
from harness.stage.depths import DepthProbe
from harness.stage.reach import Reach
from harness.stage.stage import GateFailed, Stage, broker_record
from targets.registry import get_transport

START_LEAD_NS = 200_000_000  # workers get their common start time this far ahead
mono = time.monotonic_ns


class Runner:
    def __init__(self, opts: RunOptions, console: Console | None = None) -> None:
        self.opts = opts
        self.console = console or Console()
        self.scenario_file = path = find_scenario(opts.scenario, opts.scenarios_dir)
        sc = load_scenario(path)
        self.scenario = sc.with_overrides(targets=parse_targets_option(opts.targets), rate=opts.rate,
                                          duration_s=opts.duration_s,
                                          repetitions=opts.repetitions, faults=opts.faults)
        self.reach = Reach.from_options(opts.urls, opts.pids)  # --url, --pid
        self.reach.check(self.scenario.targets)
        local = not all(map(self.reach.by_url, self.scenario.targets))  # targets on this machine
        self.processes_note = settle_processes(opts, local)  # --processes auto
        self.spare_hint = spare_cores_hint(opts, local)  # said when the generator falls behind
        self.run_id, self.store = run_id_for(self.scenario.name), opts.store or sc.data.store
        self.token = uuid.uuid4().hex[:8]  # unique per run: queue names on a shared broker
        self.broker: dict[str, Any] | None = None
        self.warnings: list[str] = []
        self.runs: list[TargetRun] = []
        self.started_at = time.time()

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> RunOutcome:
        sc, opts = self.scenario, self.opts
        try:
            opts.results_dir.mkdir(parents=True, exist_ok=True)
            left = abandoned.find(opts.results_dir)
            self.writer = ResultWriter(opts.results_dir, self.run_id)
        except OSError as exc:
            raise UserError(f"--results-dir {opts.results_dir}: cannot write results there "
                            f"({exc.strerror})") from None
        self.run_id = self.writer.run_id  # with a suffix when another run took the name
        self.environment = environment(opts.target_cpus, opts.load_cpus)
        self.progress = ProgressView(self.console)
        for a in left:
            self.progress.note(f"found {abandoned.describe(a)}; `commbench clean --results-dir "
                               f"{opts.results_dir}` finalises or removes it")
        self.progress.note(f"run {self.run_id}: {sc.name}, targets "
                           f"{', '.join(t.name for t in sc.targets)}, "
                           f"{sc.repetitions} repetition(s) → {self.writer.dir}")
        if self.processes_note:
            self.progress.note(self.processes_note)
        all_cpus = tuple(sorted(os.sched_getaffinity(0)))
        try:
            if opts.load_cpus:
                os.sched_setaffinity(0, set(opts.load_cpus))
            with Stage(self.writer.log_dir, amqp_url=opts.amqp_url,
                       data_dir=self.writer.dir / "data", note=self.progress.note) as stage:
                self.stage = stage
                stage.on_schema = partial(abandoned.record_schema, self.writer.dir)
                stage.need_brokers((t.transport for t in sc.targets if not self.reach.by_url(t)),
                                   private=self.reach.own_broker_needed(sc.targets, sc.faults))
                self._record_brokers()
                self.warnings += self.reach.warnings(sc.targets) + probe_notes(sc.targets)
                self._checkpoint()
                self.target_cpus = opts.target_cpus or all_cpus
                for rep in range(1, sc.repetitions + 1):  # each target under each variant
                    order = [(ref, v) for ref in sc.targets for v in sc.variants or [None]]
                    shift = (rep - 1) % len(order)
                    runs = [TargetRun(ref, rep, sc, policy_set=v)  # type: ignore[arg-type]
                            for ref, v in order[shift:] + order[:shift]]
                    self.runs.extend(runs)
                    for group in [runs] if opts.concurrent else [[r] for r in runs]:
                        self._measure(group)
        except KeyboardInterrupt as exc:
            with signals_ignored():
                outcome = self._finish("partial")
            raise Interrupted(outcome, getattr(exc, "signum", Interrupt().signum)) from None
        except UserError:
            if not self.runs:  # refused before anything ran (e.g. the broker): no result
                shutil.rmtree(self.writer.dir, ignore_errors=True)
                raise
            with signals_ignored():
                self._finish("partial")
            raise
        except BaseException:
            with signals_ignored():
                self._finish("partial")
            raise
        finally:
            self.progress.close()
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, set(all_cpus))
        return self._finish("complete")

    def _record_brokers(self) -> None:
        for use in self.stage.brokers.values():
            self.broker, warning = broker_record(use)
            self.warnings += [warning] if warning else []

    def _measure(self, runs: list[TargetRun]) -> None:
        """Start, gate, load and stop a set of target runs (one, or all with --concurrent)."""
        try:
            for r in runs:
                self._prepare(r)
            live = [r for r in runs if r.status == "running"]
            if live:
                t0 = mono() + START_LEAD_NS
                for r in live:
                    self._begin(r, t0)
                self._drive(live)
            for r in runs:
                self._complete(r)
            for r in runs:
                self._settle(r)
            self._checkpoint()
        except KeyboardInterrupt as exc:
            with signals_ignored():
                self._abort(runs, "interrupted",
                            exc.cause if isinstance(exc, Interrupt) else Interrupt().cause)
            raise
        except BaseException:
            with signals_ignored():
                self._abort(runs, "failed")
            raise
        finally:
            with signals_ignored():
                for r in runs:
                    self._release(r)

    def _prepare(self, r: TargetRun) -> None:
        sc = self.scenario
        self.progress.note(f"{'reaching' if self.reach.by_url(r.ref) else 'starting'} {r.label} …")
        kind = get_transport(r.ref.transport).broker
        if kind is not None and not self.reach.by_url(r.ref):  # first: SIGKILL must not hide it
            use = self.stage.brokers[kind.name]
            abandoned.record_namespace(self.writer.dir, self._namespace(r), use.url, use.private)
        try:
            r.target = self.stage.start(r.ref, name=r.name, namespace=self._namespace(r),
                                        seed=sc.data.seed_spec(), store=self.store,
                                        cpus=self.target_cpus, url=self.reach.url(r.ref),
                                        topology=sc.topology, policies=r.policy_set.to_wire())
            self.stage.gate(r.target, sc.data.seed_spec(), sc.load.timeout_s)
        except GateFailed as exc:
            return self._refuse(r, str(exc))
        except UserError as exc:
            return self._refuse(r, f"did not start: {exc}")
        roots = [s.pid for s in r.target.services.values()] or list(self.reach.probed(r.ref))
        r.probed = bool(roots)
        parts = {role: ProcessProbe([s.pid]) for role, s in r.target.services.items()}
        if get_transport(r.ref.transport).broker is not None and not r.target.external:
            pids = self.stage.broker_pids(r.target)
            if pids is None:
                self.warnings.append(f"{r.label}: broker processes not found or not readable; "
                                     "CPU per request excludes the broker")
            else:
                roots += pids
                parts["broker"] = ProcessProbe(pids)
        prefix = self._request_prefix(r)
        accepted = get_transport(r.ref.transport).accepted_moment
        specs = [WorkerSpec(r.ref.transport, r.ref.variant, r.target.url,
                            EngineConfig(sc, i, self.opts.processes, prefix,
                                         record_accepted=accepted),
                            self.opts.load_cpus)
                 for i in range(self.opts.processes)]
        r.pool = WorkerPool(specs)
        r.meter = Meter(ProcessProbe(roots), ProcessProbe(r.pool.pids), r.resource,
                        parts if len(r.target.services) > 1 else None)
        r.depths = DepthProbe.of(r.target)
        r.watch_policies(self.writer.dir)
        try:
            r.pool.wait_ready()
        except RuntimeError as exc:
            return self._refuse(r, str(exc))
        r.status = "running"

    def _refuse(self, r: TargetRun, message: str) -> None:
        r.fail(message)
        self.progress.end(r.label, f"failed: {r.error}")

    def _begin(self, r: TargetRun, t0: int) -> None:
        sc = self.scenario
        assert r.pool is not None and r.meter is not None
        r.window.begin(t0)
        r.results = self.writer.target(r.row, r.ref.transport, r.ref.variant, r.repetition,
                                       r.window.epoch_s())
        listeners: list[SecondListener] = [r.results, r.window,
                                           ProgressListener(self.progress, r.label)]
        if sc.faults and r.target is not None:
            r.cascade = Cascade(r.window.seconds)
            r.injector = Injector(self.stage, r.target, sc.faults, r.window.start_ns,
                                  r.meter.follow)
            listeners.append(r.cascade)
        r.watch_consistency(listeners)

        def on_second(m: MergedSecond) -> None:
            for listener in listeners:
                listener.on_second(m)

        r.merger = Merger(self.opts.processes, on_second)
        r.meter.begin(r.window.start_ns, sc.warmup_s, r.window.seconds)
        r.pool.start(t0)
        self._checkpoint()
        self.progress.begin(r.label, sc.warmup_s, sc.duration_s)

    def _drive(self, runs: list[TargetRun]) -> None:
        """Collect seconds from every generator process, probe once a second, watch the
        targets, until every generator has finished."""
        while True:
            active = [r for r in runs if r.pool is not None and not r.pool.finished]
            if not active:
                break
            due = min([r.meter.due_ns for r in active if r.meter is not None]
                      + [d for r in active if r.injector and (d := r.injector.due_ns)])
            conns = [c for r in active for i, c in enumerate(r.pool.conns)  # type: ignore[union-attr]
                     if i not in r.pool.done]  # type: ignore[union-attr]
            mpc.wait(conns, max(0.0, (due - mono()) / NS))
            for r in active:
                assert r.pool is not None and r.meter is not None
                self._collect(r, r.pool.poll(0))
                if r.injector is not None:
                    r.injector.tick()
                r.meter.sample()
                if r.died():
                    r.pool.stop()

    def _collect(self, r: TargetRun, msgs: list[Message]) -> None:
        """Hand generator messages to the run: seconds to the merger, a process's stats as it
        finishes, and an error as a failure (stopping the other processes); an error while
        an interrupted or failed run stops is kept as a warning."""
        assert r.pool is not None and r.merger is not None
        for kind, index, payload in msgs:
            if kind == "second":
                r.merger.add(index, payload)
            elif kind == "done":
                r.merger.finish(index)
                if payload is not None:
                    r.stats.append(payload)
            elif kind == "error":
                r.merger.finish(index)
                message = f"load process {index}: {str(payload).splitlines()[0]}"
                if r.status == "running":
                    r.fail(message)
                else:  # already stopping: keep the reason without replacing the first one
                    self.warnings.append(f"{r.label}: {message}")
                r.pool.stop()

    def _complete(self, r: TargetRun) -> None:
        """Merge what remains, write summary rows, decide the status and saturation."""
        if r.merger is None or r.results is None or r.meter is None:
            return
        if r.injector is not None:
            r.injector.finish()
        r.died()  # also after the load, e.g. while draining
        r.merger.flush_all()
        r.meter.sample(final=True)
        if r.consistency is not None:
            r.consistency.write(self.writer.dir)
        sc, w, totals = self.scenario, r.window, r.merger.totals
        waits = sum(s.in_flight_waits for s in r.stats)
        # A failed run is not judged: its stop, not the generator, shaped its last seconds.
        judged = r.judged = w.saturation() if sc.load.model == "open" and r.status != "failed" else None
        if judged is not None and judged.saturated:
            self.warnings.append(w.saturation_warning(judged, r.label, sc.load.in_flight, waits)
                                 + self.spare_hint)
        if totals.clamped:
            self.warnings.append(f"{r.label}: {totals.clamped} values above one hour clamped")
        client_cpu_s = r.meter.client_cpu_s
        r.rows = r.results.finish(
            totals, measured_s=w.measured_s, rates=w.rates(),
            cpu_s=r.meter.cpu_s if r.probed else None,
            client_cpu_us=client_cpu_s * 1e6 / w.started
            if client_cpu_s is not None and w.started else None,
            rss_mb_max=r.meter.target.rss_max / 2**20 if r.probed else None,
            saturated=r.saturated)
        if r.status == "running":
            r.status = "ok"
        self.progress.end(r.label, r.status + (f": {r.error}" if r.error else "") + r.flag_note)

    def _settle(self, r: TargetRun) -> None:
        """A chain's books from its stores after a drain; a read model against its log."""
        self.warnings += r.check_consistency(self.writer.dir)
        if r.target is not None and r.target.stores is not None and r.results is not None:
            try:
                r.reconciliation = settle(r.target.stores, self._request_prefix(r))
            except ValueError as exc:  # a store missing or not what it should be
                r.reconciliation = {"clean": False, "problems": [f"impossible: {exc}"]}
            self.warnings += [f"{r.label}: reconciliation: {line}"
                              for line in r.reconciliation["problems"]]

    def _request_prefix(self, r: TargetRun) -> str:  # the generator's request ids
        return f"{self.run_id[:15]}-r{r.repetition}"

    def _namespace(self, r: TargetRun) -> str:
        """Queue and exchange names of one target run on the broker."""
        return f"cb-{self.run_id}-{self.token}-{r.broker_name}"

    def _release(self, r: TargetRun) -> None:
        if r.depths is not None:
            r.depths.close()
        if r.injector is not None:
            r.injector.finish()  # a paused service resumed, a killed one back, before it stops
        if r.pool is not None:
            r.pool.close()
        if r.target is not None:
            self.stage.stop(r.target)

    def _abort(self, runs: list[TargetRun], status: str, cause: str = "") -> None:
        """Stop the generators of unfinished runs, keep what they measured."""
        for r in runs:
            if r.status != "running":
                continue
            r.status, r.error = status, f"{status} during the run" + (f" ({cause})" if cause else "")
            r.stopped()
            if r.pool is not None and r.merger is not None:
                r.pool.stop()
                deadline = time.monotonic() + 3  # let the generators flush their seconds
                while not r.pool.finished and time.monotonic() < deadline:
                    self._collect(r, r.pool.poll(0.2))
            with contextlib.suppress(Exception):
                self._complete(r)

    # -- run.json ----------------------------------------------------------------------

    def _meta(self, status: str) -> dict[str, Any]:
        targets = [r.record(None if self.reach.by_url(r.ref) else self._namespace(r)
                            if get_transport(r.ref.transport).broker is not None else None,
                            self.reach.record(r.ref)) for r in self.runs]
        return run_meta(self, status, targets)

    def _checkpoint(self) -> None:
        """run.json as it stands, status `running`: what a SIGKILL leaves for `clean`."""
        with contextlib.suppress(OSError):
            self.writer.write_run_json(self._meta(RUNNING))

    def _finish(self, status: str) -> RunOutcome:
        meta = self._meta(status)
        write_fault_files(self.writer.dir, meta["targets"])
        path = self.writer.finish(meta)
        abandoned.namespaces_deleted(path)  # the stage has deleted them: nothing left behind
        rows = [row for r in self.runs for row in r.rows]
        failed = [r.label for r in self.runs if r.status == "failed"]
        return RunOutcome(path, status, rows, failed, self.warnings)
