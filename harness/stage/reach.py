"""Targets reached by URL (`--url NAME=URL`): an implementation commbench did not start,
local or remote, in any language. commbench runs none of its processes, so it cannot probe
their CPU and memory unless the user names them (`--pid NAME=PID`), starts no broker for it
and deletes no broker namespace of it. `run` and `locust` take these options through this
module, so both check them and record what was not measured alike.

NAME is a transport (`rest`, `grpc`, `queue`): every target of that transport in the command
is reached at that URL, whichever client variant drives it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

from harness.errors import UserError
from harness.scenario import TargetRef
from targets.redact import redact
from targets.registry import get_transport

CPU_NOT_MEASURED = "not measured: target reached by URL; give --pid {name}=PID to measure it"


@dataclass(frozen=True)
class Reach:
    """Which transports are reached by URL, and which processes of theirs to probe."""

    urls: Mapping[str, str] = field(default_factory=dict)  # transport → URL
    pids: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # transport → PIDs

    @classmethod
    def from_options(cls, urls: Mapping[str, str], pids: Mapping[str, str]) -> Reach:
        """From --url NAME=URL and --pid NAME=PID[,PID…] pairs; UserError when a PID is not a
        readable process or names a target commbench starts (and so probes) itself."""
        parsed: dict[str, tuple[int, ...]] = {}
        for name, text in pids.items():
            if name not in urls:
                raise UserError(f"--pid {name}: commbench starts {name} itself and probes its "
                                f"processes; --pid goes with --url {name}=URL")
            try:
                parsed[name] = tuple(int(p) for p in text.split(","))
            except ValueError:
                raise UserError(f"--pid takes NAME=PID or NAME=PID,PID…, got {name}={text}") \
                    from None
            for pid in parsed[name]:
                _check_pid(name, pid)
        return cls(dict(urls), parsed)

    def check(self, refs: Iterable[TargetRef]) -> None:
        """Every --url names a target of the command; none of those names a server variant
        (what answers at a URL is whatever runs there)."""
        refs = list(refs)
        transports = [r.transport for r in refs]
        for name in self.urls:
            if name not in transports:
                raise UserError(f"--url names {name!r}, which is not among the targets "
                                f"({','.join(r.spec for r in refs)})")
        for ref in refs:
            if ref.server and ref.transport in self.urls:
                raise UserError(f"--url {ref.transport}: a target reached by URL runs whatever "
                                f"server answers there; drop @{ref.server} from {ref.name}")

    def own_broker_needed(self, refs: Sequence[TargetRef], faults: Iterable[Any]) -> bool:
        """A broker fault stops the broker, so the run needs one of its own; a target reached
        by URL has its broker elsewhere, which the run refuses to stop (UserError)."""
        if not any(f.kind == "broker" for f in faults):
            return False
        for ref in refs:
            if self.by_url(ref) and get_transport(ref.transport).broker is not None:
                raise UserError(f"--fault broker: {ref.name} is reached by --url, so its broker "
                                "is not this run's to stop; drop the broker fault or the --url")
        return True

    def url(self, ref: TargetRef) -> str | None:
        return self.urls.get(ref.transport)

    def by_url(self, ref: TargetRef) -> bool:
        return ref.transport in self.urls

    def probed(self, ref: TargetRef) -> tuple[int, ...]:
        """The PIDs whose process trees are probed for a target reached by URL."""
        return self.pids.get(ref.transport, ())

    def record(self, ref: TargetRef) -> dict[str, Any]:
        """The run.json fields of a target row that say how it was reached and measured."""
        if not self.by_url(ref):
            return {"measured_by_url": False}
        pids = self.probed(ref)
        cpu = (f"measured: the process tree of PID {', '.join(map(str, pids))} (--pid)" if pids
               else CPU_NOT_MEASURED.format(name=ref.transport))
        return {"measured_by_url": True, "pids": list(pids) or None, "cpu": cpu}

    def warnings(self, refs: Iterable[TargetRef]) -> list[str]:
        """One warning per transport reached by URL: what its CPU figures do or do not hold."""
        out = []
        for ref in dict.fromkeys(r for r in refs if self.by_url(r)):
            pids = self.probed(ref)
            where = redact(self.urls[ref.transport])
            if not pids:
                out.append(f"{ref.name}: measured by URL ({where}): CPU and memory not measured; "
                           f"give --pid {ref.transport}=PID to measure them")
            elif get_transport(ref.transport).broker is not None:
                out.append(f"{ref.name}: measured by URL ({where}): CPU per request covers PID "
                           f"{', '.join(map(str, pids))} only; add the broker's PID "
                           f"(--pid {ref.transport}=PID,BROKER_PID) to charge the broker as "
                           "runs of the bundled queue do")
        return out


def _check_pid(name: str, pid: int) -> None:
    try:
        psutil.Process(pid).cpu_times()
    except (psutil.NoSuchProcess, ValueError):
        raise UserError(f"--pid {name}={pid}: no such process") from None
    except psutil.AccessDenied:
        raise UserError(f"--pid {name}={pid}: cannot read that process's CPU time "
                        "(another user's process?)") from None
