"""The life of a private server the harness owns (a RabbitMQ node, a PostgreSQL cluster):
made in a fresh temporary folder, started, and on every exit path stopped; the folder is
removed unless the server failed before it was ready (its logs there name the cause, and the
UserError names the folder)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar


class Owned(Protocol):
    ready: bool

    def start(self) -> float:
        """Start and wait until ready; the seconds it took. UserError when it cannot."""
        ...

    def stop(self) -> None: ...


S = TypeVar("S", bound=Owned)


@contextlib.contextmanager
def running(make: Callable[[Path], S], prefix: str,
            work_dir: Path | None = None) -> Iterator[tuple[S, float]]:
    """(the started server, its start-up seconds) for the life of the block."""
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix=prefix, dir=work_dir))
    server = make(base)
    ok = False
    try:
        startup_s = server.start()
        yield server, startup_s
        ok = True
    finally:
        server.stop()
        if ok or server.ready:
            shutil.rmtree(base, ignore_errors=True)
