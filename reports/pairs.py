"""Which targets a claim sets side by side: production stacks only (never a probe client),
the transport's default target first, and under policy variants twins of one variant."""

from __future__ import annotations

import pandas as pd

from reports.findings import compared_targets
from reports.loader import Run


def production_targets(run: Run, df: pd.DataFrame) -> list[str]:
    """Compared targets but probe clients: the claims are about production stacks."""
    return [t for t in compared_targets(run, df) if t not in run.probes()]


def pick(targets: list[str], transport: str, *, like: str | None = None) -> str | None:
    """The transport's default target, else its first; beside `like`, its twin (`rest~x`)."""
    if like is not None and "~" in like:
        same = f"{transport}~{like.split('~', 1)[1]}"
        return same if same in targets else None
    if transport in targets:
        return transport
    return next((t for t in targets if t.split("~")[0].split("-")[0] == transport), None)
