"""The harness's side of the eventsourced server's own control lines
(targets/eventsourced/controls.py): its figures once a second, its projector crashed and
restarted (the `projector` fault), and the read model checked against the log after the load.
Through the control socket, outside the measured path; standard library only."""

from __future__ import annotations

from typing import Any

from harness.stage.control import MAX_QUERY_ANSWER, exchange
from harness.stage.stage import EDGE, StagedTarget

TRANSPORT = "eventsourced"
FIGURES_TIMEOUT_S = 0.5  # a local socket answers in well under that
DRAIN_S = 10.0  # the backlog gets this long to drain before the check
CHECK_TIMEOUT_S = DRAIN_S + 30.0  # the drain, then a replay of the whole log
MAX_FIGURES_ANSWER = 64 << 20  # a second's values, 4 bytes each in base64: millions fit


class ProjectionProbe:
    def __init__(self, path: str) -> None:
        self.path = path

    @classmethod
    def of(cls, target: StagedTarget) -> ProjectionProbe | None:
        """The probe of an eventsourced target we stood up (None: another transport, or one
        reached by URL, whose control socket we do not have)."""
        service = target.services.get(EDGE)
        if target.ref.transport != TRANSPORT or service is None or not service.control:
            return None
        return cls(service.control)

    def figures(self) -> dict[str, Any]:
        """Since the last call: appends and projected events with their histograms, and the
        state now (UserError when the server does not answer)."""
        return dict(exchange(self.path, {"query": "eventsourced"}, timeout=FIGURES_TIMEOUT_S,
                             limit=MAX_FIGURES_ANSWER)["figures"])

    def projector(self, running: bool) -> dict[str, Any]:
        """Crash (False) or restart (True) the projector."""
        return exchange(self.path, {"command": "projector", "running": running})

    def check(self) -> dict[str, Any]:
        """The read model against a fresh replay of the log, once the backlog has drained."""
        return dict(exchange(self.path, {"query": "projection_check", "drain_s": DRAIN_S},
                             timeout=CHECK_TIMEOUT_S, limit=MAX_QUERY_ANSWER)["check"])
