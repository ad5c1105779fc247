"""`commbench verify`: start (or reach) the targets, run the conformance suite through every
client variant, print one check × target table."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness.errors import UserError
from harness.scenario import TargetRef, parse_target
from harness.stage.conformance import CHECKS, TEMPORAL_CHECKS, Check, run_checks
from harness.stage.flow_checks import FLOW_CHECKS, chain_status, run_flow_checks
from harness.stage.postgres import check_reachable
from harness.stage.stage import Stage, store_kind
from targets.core.errors import InvalidRequest, NotFound, OrderError
from targets.core.seed import SeedSpec
from targets.registry import TRANSPORTS, get_transport
from targets.serving import TOPOLOGIES, TOPOLOGY_CHAIN, TOPOLOGY_SINGLE

REACH = "reach the target"


def column_name(transport: str, variant: str, server: str | None = None) -> str:
    """`rest` for the default client and server, `rest-httpx` for another client variant,
    `rest-granian` for another server variant (results use the same names)."""
    return TargetRef(transport, variant, server).name


PREFLIGHT_TIMEOUT_S = 5.0


async def verify_client(transport: str, variant: str, url: str, seed: SeedSpec,
                        chain: bool = False) -> list[Check]:
    """The checks, after one preflight call: a target that does not answer at all gets one
    failed `reach the target` row, not every check timing out in turn. `chain`: the edge of
    the order flow, so new orders settle as the seeded rules say and the flow's own checks
    run too."""
    factory = get_transport(transport).client_factory(variant)
    try:
        client = await factory(url, timeout=PREFLIGHT_TIMEOUT_S)
    except OrderError as exc:
        return [Check(REACH, False, str(exc))]
    try:
        try:
            await client.get_order(1)
        except (NotFound, InvalidRequest):
            pass  # an answer is all the preflight asks for
        except OrderError as exc:
            return [Check(REACH, False, f"{url} does not answer: {exc.kind}: {exc}")]
    finally:
        await client.close()
    client = await factory(url)
    try:
        if not chain:
            return [Check(REACH, True), *await run_checks(client, seed)]
        return [Check(REACH, True),
                *await run_checks(client, seed, created_status=chain_status(seed)),
                *await run_flow_checks(client, seed)]
    finally:
        await client.close()


def run_verify(
    names: list[str],
    *,
    urls: dict[str, str],
    clients: dict[str, str],
    amqp_url: str,
    log_dir: Path,
    seed: SeedSpec | None = None,
    console: Console | None = None,
    topology: str = TOPOLOGY_SINGLE,
    store: str = "memory",
) -> bool:
    """`names` are targets as `TRANSPORT[:CLIENT][@SERVER]` (none: every transport that
    serves the topology); a client named there is the only one checked, else every client
    variant (or the one --client names)."""
    console = console or Console()
    seed = seed or SeedSpec()
    chain = topology == TOPOLOGY_CHAIN
    names = names or [t.name for t in TRANSPORTS.values() if t.serves_chain or not chain]
    refs = []
    for name in names:
        try:
            refs.append(parse_target(name))
        except KeyError as exc:
            raise UserError(f"--targets: {exc.args[0]}") from None
    transports = [r.transport for r in refs]
    for ref in refs:
        if chain and not get_transport(ref.transport).serves_chain:
            raise UserError(f"--targets: {ref.transport} does not serve the chain topology")
    for option, given in (("--url", urls), ("--client", clients)):
        for name in given:
            if name not in transports:
                raise UserError(f"{option} names {name!r}, which is not in --targets ({','.join(names)})")
    for name, ref in zip(names, refs, strict=True):
        if ref.server and ref.transport in urls:
            raise UserError(f"--url {ref.transport}: a target reached by URL runs whatever server "
                            f"answers there; drop @{ref.server} from {name}")
    for name, variant in clients.items():
        try:
            get_transport(name).client_factory(variant)
        except KeyError as exc:
            raise UserError(exc.args[0]) from None
    for ref in refs:
        if ref.transport not in urls and store_kind(store) not in get_transport(ref.transport).stores:
            raise UserError(f"--store: {ref.transport} takes the stores "
                            f"{', '.join(get_transport(ref.transport).stores)}, not "
                            f"{store_kind(store)!r}")
    if store_kind(store) == "postgresql":
        check_reachable(store)
    columns: dict[str, list[Check]] = {}
    namespace = f"verify-{uuid.uuid4().hex[:8]}"
    if topology not in TOPOLOGIES:
        raise UserError(f"--topology: choose one of {', '.join(TOPOLOGIES)}, got {topology!r}")
    with tempfile.TemporaryDirectory(prefix="commbench-verify-") as data, \
            Stage(log_dir, amqp_url=amqp_url, data_dir=Path(data), note=console.print) as stage:
        stage.need_brokers(t for t in transports if t not in urls)
        for name, ref in zip(names, refs, strict=True):
            transport = get_transport(ref.transport)
            served = TargetRef(ref.transport, transport.default_client, ref.server)
            target = stage.start(served, name=served.name, namespace=namespace, seed=seed,
                                 url=urls.get(ref.transport), topology=topology, store=store)
            if not target.external:
                console.print(f"{served.name}: ready at {target.url}")
            explicit = ":" in name.partition("@")[0]
            variants = [ref.variant] if explicit else [clients[ref.transport]] \
                if ref.transport in clients else list(transport.clients)
            for variant in variants:
                columns[column_name(ref.transport, variant, ref.server)] = asyncio.run(
                    verify_client(ref.transport, variant, target.url, seed, chain)
                )
    console.print(render_table(columns))
    failures = [(col, c) for col, checks in columns.items() for c in checks if not c.passed]
    for col, check in failures:
        console.print(f"[red]FAIL[/red] {col} · {check.name}: {check.detail}", soft_wrap=True)
    total = sum(len(c) for c in columns.values())
    if failures:
        console.print(f"conformance: {len(failures)} of {total} checks failed")
    else:
        console.print(f"conformance: all {total} checks passed")
    return not failures


def render_table(columns: dict[str, list[Check]]) -> Table:
    table = Table(title="conformance", show_lines=False)
    table.add_column("check")
    for col in columns:
        table.add_column(col, justify="center")
    flow = any(c.name in FLOW_CHECKS for checks in columns.values() for c in checks)
    temporal = any(c.name in TEMPORAL_CHECKS for checks in columns.values() for c in checks)
    names = [REACH, *CHECKS, *(TEMPORAL_CHECKS if temporal else ()),
             *(FLOW_CHECKS if flow else ())] if columns else []
    for name in names:
        cells = []
        for checks in columns.values():
            check = next((c for c in checks if c.name == name), None)
            cells.append("not run" if check is None
                         else "[green]pass[/green]" if check.passed else "[red]FAIL[/red]")
        table.add_row(name, *cells)
    return table
