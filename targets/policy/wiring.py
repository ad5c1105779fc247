"""How a chain edge takes its policies from its ServeConfig, the same on REST and gRPC."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from targets.policy.config import Policies
from targets.policy.guard import Guarded

SLACK_S = 0.1  # the edge's own hop limit lets the guard's last attempt end first


def edge_downstream(policies_json: str, hop_timeout_s: float,
                    make: Callable[[float], Any]) -> tuple[Any, float]:
    """(the downstream, the hop limit for ChainEdge): `make(attempt_timeout_s)` builds the
    transport's client; with any hop policy on, it is wrapped in Guarded, each attempt
    limited by the policy's timeout (or the hop timeout) and the hop by every attempt and
    wait together."""
    policies = Policies.from_json(policies_json)
    attempt_s = policies.timeout_s or hop_timeout_s
    inner = make(attempt_s)
    if not policies.active:
        return inner, hop_timeout_s
    return Guarded(inner, policies, attempt_s), policies.hop_limit_s(attempt_s) + SLACK_S


def edge_limit(policies_json: str) -> int | None:
    """The edge server's concurrency limit (shedding), None when off."""
    return Policies.from_json(policies_json).shed
