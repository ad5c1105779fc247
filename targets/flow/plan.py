"""How a chain topology is stood up, independent of who starts the processes: every role a
transport serves, downstreams first and the edge last (given their URLs), each with its own
SQLite store `<folder>/<role>.db`, which reconciliation reads afterwards.

    urls = stand_up("rest", ServeConfig(seed=...), folder,
                    lambda role, config: launcher.start("rest", config, name=f"rest-{role}").url)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from targets.registry import get_transport
from targets.serving import ROLE_ORDER, TOPOLOGY_CHAIN, ServeConfig


def start_order(transport: str) -> tuple[str, ...]:
    """The roles to start, downstreams first (so the edge can be given their URLs; on the
    queue the order does not matter, every role declaring the whole saga)."""
    roles = get_transport(transport).roles
    return (*(r for r in roles if r != ROLE_ORDER), ROLE_ORDER)


def store_path(folder: Path, role: str) -> Path:
    return folder / f"{role}.db"


def role_config(base: ServeConfig, role: str, folder: Path,
                downstreams: dict[str, str] | None = None) -> ServeConfig:
    """`base` as the chain's `role`, on its own store in `folder`; the edge gets `downstreams`."""
    return dataclasses.replace(
        base, role=role, topology=TOPOLOGY_CHAIN, store=f"sqlite:{store_path(folder, role)}",
        downstreams=tuple((downstreams or {}).items()) if role == ROLE_ORDER else (),
    )


def stand_up(transport: str, base: ServeConfig, folder: Path,
             start: Callable[[str, ServeConfig], str]) -> dict[str, str]:
    """Start the chain through `start(role, config) -> URL`; returns role → URL (the edge's
    under "order"). The edge receives every downstream's URL; the queue ignores them."""
    folder.mkdir(parents=True, exist_ok=True)
    urls: dict[str, str] = {}
    for role in start_order(transport):
        urls[role] = start(role, role_config(base, role, folder, urls))
    return urls
