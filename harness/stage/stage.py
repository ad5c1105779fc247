"""The stage: stands targets up and takes them down, the same way for every command.

`run`, `verify` and `locust` (and later `sweep`) all enter a Stage and keep no copy of these
steps: find or start each broker the targets need (once per stage), launch a target's
server processes, each named so a fault can signal it and a probe can measure it, wait for
readiness (the launcher reads the server's ready line), hold the target to the conformance
gate, and on exit stop every process and delete every broker namespace the stage created.
A target reached by URL (`--url`) gets the gate but no process and no clean-up of ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.errors import UserError
from harness.lifecycle import signals_ignored
from harness.scenario import TargetRef
from harness.stage.launcher import READY_TIMEOUT_S, Launcher, Service, Starting
from targets.core.seed import SeedSpec
from targets.flow.plan import stand_up
from targets.redact import redact
from targets.registry import BrokerKind, get_transport
from targets.serving import TOPOLOGY_CHAIN, TOPOLOGY_SINGLE, ServeConfig

EDGE = "order"  # the service clients talk to; the topology adds its downstreams by name


class GateFailed(UserError):
    """The target did not pass the conformance gate: it must not be measured."""


@dataclass
class StagedTarget:
    """One target on the stage: its processes by name (none when reached by URL)."""

    ref: TargetRef
    name: str  # unique on this stage: log file names, data files
    url: str
    namespace: str | None = None  # on the broker, when the transport uses one
    broker_url: str | None = None
    services: dict[str, Service] = field(default_factory=dict)
    conformance: str = ""  # "17/17 checks passed" once gated
    checks_passed: tuple[str, ...] = ()  # the names of the checks it passed (the report's claims)
    stopped: bool = False
    topology: str = "single"
    stores: Path | None = None  # chain: the folder of every service's store (reconciliation)
    down: set[str] = field(default_factory=set)  # services a fault killed on purpose
    relaunch: dict[str, Callable[[], Starting]] = field(default_factory=dict, repr=False)
    schema: tuple[str, str] | None = None  # (PostgreSQL URL, schema) its store made; dropped

    @property
    def external(self) -> bool:
        return not self.services

    @property
    def edge(self) -> Service | None:
        return self.services.get(EDGE)

    def dead(self) -> Service | None:
        """A service of this target that has exited on its own (not killed by a fault)."""
        return next((s for role, s in self.services.items()
                     if role not in self.down and not s.alive()), None)


@dataclass(frozen=True)
class BrokerUse:
    """A broker the stage found or started, as a run records it."""

    kind: BrokerKind
    info: Any  # the provider's BrokerInfo: url, private, startup_s

    @property
    def url(self) -> str:
        return str(self.info.url)

    @property
    def private(self) -> bool:
        return bool(self.info.private)


class Stage:
    """Use as a context manager; every exit path stops what it started."""

    def __init__(self, log_dir: Path, *, amqp_url: str, data_dir: Path | None = None,
                 note: Callable[[str], None] = lambda _: None) -> None:
        self.log_dir = log_dir
        self.amqp_url = amqp_url
        self.data_dir = data_dir
        self.note = note
        # Told (URL, schema) before a target's server may create the schema, so a run killed
        # by SIGKILL leaves a record `commbench clean` drops it from.
        self.on_schema: Callable[[str, str], None] = lambda url, schema: None
        self.brokers: dict[str, BrokerUse] = {}
        self.targets: list[StagedTarget] = []
        self._stack = contextlib.ExitStack()
        self._launcher = Launcher(log_dir)
        self._control_dir: str | None = None

    def __enter__(self) -> Stage:
        self._stack.__enter__()
        self._stack.callback(self._launcher.stop_all)
        return self

    def __exit__(self, *exc: object) -> None:
        with signals_ignored():
            for target in reversed(self.targets):
                self.stop(target)
            self._stack.__exit__(None, None, None)

    # -- brokers ---------------------------------------------------------------------------

    def need_brokers(self, transports: Iterable[str], *, private: bool = False) -> None:
        """Find or start, now, every broker these transports need: a refused or missing
        broker fails before anything is measured. `private`: start one of our own even when
        --amqp-url answers (the broker fault stops it; a shared one is never touched)."""
        for name in transports:
            kind = get_transport(name).broker
            if kind is not None:
                self._broker(kind, private)

    def _broker(self, kind: BrokerKind, private: bool = False) -> BrokerUse:
        use = self.brokers.get(kind.name)
        if use is None:
            provider = kind.resolve()
            info = self._stack.enter_context(provider.ensure(self.amqp_url, private=private))
            use = self.brokers[kind.name] = BrokerUse(kind, info)
            why = (" (the broker fault stops it; the broker at --amqp-url is left alone)"
                   if private else "")
            self.note(f"broker: {provider.describe(info)}{why}")
        return use

    def switch_broker(self, target: StagedTarget, on: bool) -> bool:
        """The broker fault: stop or start the broker `target` uses (False: it uses none).
        Only a broker this stage started is ever touched."""
        kind = get_transport(target.ref.transport).broker
        if kind is None:
            return False
        use = self.brokers.get(kind.name)
        if target.external or use is None or not use.private or use.info.switch is None:
            raise UserError(f"{target.name}'s broker is not one this run started: the broker "
                            "fault never stops a shared broker")
        use.info.switch(on)
        return True

    def broker_pids(self, target: StagedTarget) -> list[int] | None:
        """The processes of the broker a target uses (None: it uses none, or they cannot be
        read)."""
        kind = get_transport(target.ref.transport).broker
        if kind is None or target.broker_url is None:
            return None
        return kind.resolve().pids(target.broker_url)

    # -- targets ---------------------------------------------------------------------------

    def start(self, ref: TargetRef, *, name: str, namespace: str, seed: SeedSpec,
              store: str = "memory", cpus: Sequence[int] = (), url: str | None = None,
              timeout: float = READY_TIMEOUT_S, topology: str = TOPOLOGY_SINGLE,
              policies: str = "") -> StagedTarget:
        """Stand a target up (or adopt the one at `url`); UserError when it cannot start.

        topology "chain": every service the transport serves in the order flow, downstreams
        first, each a process named `<name>-<service>` (the edge: `<name>`) on its own SQLite
        store in `<data>/<name>/`, which reconciliation reads afterwards. `policies` (the
        wire JSON of harness.scenario.policies) goes to every service: each applies what is
        its own (a REST or gRPC edge its hops' policies, a queue service its queues')."""
        transport = get_transport(ref.transport)
        if url is not None:
            target = StagedTarget(ref, name, url, topology=topology)
            self.targets.append(target)
            return target
        if store_kind(store) not in transport.stores:
            raise UserError(f"{ref.transport} takes the stores {', '.join(transport.stores)}, "
                            f"not {store_kind(store)}")
        broker = self._broker(transport.broker) if transport.broker is not None else None
        broker_url = broker.url if broker is not None else self.amqp_url
        target = StagedTarget(ref, name, "", namespace if broker else None,
                              broker_url if broker else None, topology=topology)
        self.targets.append(target)
        config = ServeConfig(amqp_url=broker_url, namespace=namespace, seed=seed)

        def launch(role: str, config: ServeConfig) -> str:
            config = replace(config, control=self._control_path(name, role), policies=policies)

            def again(port: int = 0) -> Starting:
                return self._launcher.spawn(ref.transport, replace(config, port=port),
                                            name=name if role == EDGE else f"{name}-{role}",
                                            cpus=cpus, timeout=timeout, server=ref.server)

            service = target.services[role] = again().ready()
            target.relaunch[role] = lambda: again(_port(service.url, target.broker_url))
            return service.url

        if topology == TOPOLOGY_CHAIN:
            target.stores = self._folder(name)
            target.url = stand_up(ref.transport, config, target.stores, launch)[EDGE]
        else:
            target.url = launch(EDGE, replace(config, store=self._store(store, name, target)))
        return target

    def restart(self, target: StagedTarget, role: str) -> Service:
        """Start a killed service again as it was (same store, same port, same name)."""
        return self.restarted(target, role, self.respawn(target, role))

    def respawn(self, target: StagedTarget, role: str) -> Starting:
        """The first half of a restart, on a thread that outlives the service (see
        Launcher.spawn): the old process stopped, the new one started, not yet ready."""
        target.services[role].stop()
        return target.relaunch[role]()

    def restarted(self, target: StagedTarget, role: str, starting: Starting) -> Service:
        """The second half, on any thread: wait until it is ready; it is the target's then."""
        service = target.services[role] = starting.ready()
        return service

    def _control_path(self, name: str, role: str) -> str:
        """A short path for the service's control socket (Unix socket paths are short)."""
        if self._control_dir is None:
            self._control_dir = tempfile.mkdtemp(prefix="cb-ctl-")
            self._stack.callback(shutil.rmtree, self._control_dir, True)
        return os.path.join(self._control_dir, f"{len(self.targets)}-{role}.sock")

    def _folder(self, name: str) -> Path:
        if self.data_dir is None:
            raise UserError("the chain topology needs a data folder for the stage")
        return (self.data_dir / name).resolve()

    def _store(self, kind: str, name: str, target: StagedTarget) -> str:
        if kind == "memory":
            return "memory"
        if store_kind(kind) == "postgresql":  # a schema of its own, dropped when it stops
            schema = f"cb_{uuid.uuid4().hex[:10]}_{re.sub(r'[^a-z0-9_]', '_', name.lower())}"[:63]
            target.schema = (kind, schema)
            self.on_schema(kind, schema)
            return f"{kind}{'&' if '?' in kind else '?'}schema={schema}"
        if self.data_dir is None:
            raise UserError("a durable store needs a data folder for the stage")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"{kind}:{(self.data_dir / f'{name}.{kind}').resolve()}"

    def gate(self, target: StagedTarget, seed: SeedSpec, timeout: float) -> str:
        """The conformance gate: the summary line, or GateFailed naming the failed checks."""
        from harness.stage.conformance import run_checks
        from harness.stage.flow_checks import chain_status, run_flow_checks

        async def check() -> list[Any]:
            factory = get_transport(target.ref.transport).client_factory(target.ref.variant)
            client = await factory(target.url, timeout=timeout)
            try:
                if target.topology != TOPOLOGY_CHAIN:
                    return await run_checks(client, seed)
                return [*await run_checks(client, seed, created_status=chain_status(seed)),
                        *await run_flow_checks(client, seed)]
            finally:
                await client.close()

        import uvloop

        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                checks = runner.run(check())
        except Exception as exc:  # the client could not even connect
            raise GateFailed(f"conformance gate: {type(exc).__name__}: {exc}") from None
        failed = [c for c in checks if not c.passed]
        target.conformance = f"{len(checks) - len(failed)}/{len(checks)} checks passed"
        target.checks_passed = tuple(c.name for c in checks if c.passed)
        if failed:
            names = ", ".join(f"{c.name} ({c.detail})" for c in failed[:3])
            raise GateFailed(f"conformance gate: {len(failed)} of {len(checks)} checks "
                             f"failed: {names}")
        return target.conformance

    def stop(self, target: StagedTarget) -> None:
        """Stop the target's processes, then delete its broker namespace (once)."""
        if target.stopped:
            return
        target.stopped = True
        for service in reversed(list(target.services.values())):
            service.stop()
        if target.schema is not None:
            from harness.stage.postgres import drop_schema

            drop_schema(*target.schema)
        if target.namespace is not None and target.broker_url is not None:
            kind = get_transport(target.ref.transport).broker
            assert kind is not None
            kind.resolve().delete_namespace(target.broker_url, target.namespace)


def store_kind(store: str) -> str:
    """"memory", "sqlite" or "postgresql" (a URL): what a transport's `stores` lists."""
    return "postgresql" if store.startswith(("postgresql://", "postgres://")) else store


def _port(url: str, broker_url: str | None) -> int:
    """The port a server bound: 0 for a broker's consumer, which binds none (its URL is the
    broker's); a server that only publishes on a broker (the outbox) keeps its own port."""
    here = urlsplit(url)
    if broker_url is not None:
        broker = urlsplit(broker_url)
        if (here.hostname, here.port) == (broker.hostname, broker.port or 5672):
            return 0
    return here.port or 0


def broker_record(use: BrokerUse) -> tuple[dict[str, Any], str | None]:
    """How run.json describes a broker the stage used, and the warning a shared one earns."""
    warning = None if use.private else (
        f"the targets with a broker used a shared broker ({redact(use.url)}): their CPU per "
        "request includes everything that broker did during each one's measured window, "
        "other users' work included")
    return {"kind": use.kind.name, "url": redact(use.url), "shared": not use.private,
            "private": use.private,
            "note": "started for this run and stopped after it" if use.private else
            "an existing broker found at --amqp-url; other work on it is charged to the CPU "
            "per request of the targets that use it"}, warning
