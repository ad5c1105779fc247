"""Starts and stops the services under test.

Each service is a `commbench serve` subprocess in its own session (process group), with a
parent-death signal so that not even a SIGKILLed harness leaves an orphan. Start-up waits
for the server's readiness line, not for a guessed delay.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from harness.errors import UserError
from harness.lifecycle import child_setup, kill_group, stop_group
from targets.redact import redact_text
from targets.registry import get_transport
from targets.serving import AMQP_URL_ENV, READY_PREFIX, ServeConfig

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0


@dataclass
class Service:
    """A running server process that the launcher owns and can signal (faults use this)."""

    name: str
    transport: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    cpus: tuple[int, ...] = ()
    control: str = ""  # its control socket (faults: delay, errors), when it has one
    _drain: threading.Thread | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, sig: int) -> None:
        """Signal the whole process group (SIGSTOP/SIGCONT pause a service, SIGKILL kills)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def last_line(self) -> str:
        """The last non-empty line of its log (where a server says why it exited), shortened."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        last = next((ln.strip() for ln in reversed(lines) if ln.strip()), "")
        return redact_text(last[:300])

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        if self._stopped:  # stopping twice could signal a recycled process group
            return self.process.returncode
        self._stopped = True
        stop_group(self.process, timeout)
        if self._drain is not None:
            self._drain.join(timeout=1)
        return self.process.returncode


def serve_command(transport: str, config: ServeConfig, server: str | None = None) -> list[str]:
    """The `commbench serve` command line; `server` picks a server variant (None: default)."""
    return [
        sys.executable, "-m", "harness.cli", "serve", transport,
        "--host", config.host, "--port", str(config.port), "--store", config.store,
        "--namespace", config.namespace,
        "--users", str(config.seed.users), "--orders-per-user", str(config.seed.orders_per_user),
        "--seed", str(config.seed.seed), *(["--server", server] if server else []),
        "--role", config.role, "--topology", config.topology,
        "--hop-timeout", repr(config.hop_timeout_s),
        *(arg for role, url in config.downstreams for arg in ("--downstream", f"{role}={url}")),
        *(["--control", config.control] if config.control else []),
        *(["--policies", config.policies] if config.policies else []),
    ]


class Launcher:
    """Owns every service it starts; `stop_all` runs on every exit path (use it as a context
    manager, and the CLI turns SIGTERM into the same unwinding as Ctrl-C)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.services: list[Service] = []

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(self, transport: str, config: ServeConfig, **options: Any) -> Service:
        """Start a service and wait until it is ready (the options are spawn's)."""
        return self.spawn(transport, config, **options).ready()

    def spawn(
        self,
        transport: str,
        config: ServeConfig,
        *,
        name: str | None = None,
        cpus: Sequence[int] = (),
        timeout: float = READY_TIMEOUT_S,
        server: str | None = None,
    ) -> Starting:
        """Start the process and return at once; `ready()` waits for its readiness line. The
        child's parent-death signal follows the thread that spawns it (child_setup), so spawn
        on a thread that outlives the service; the wait may run on any other."""
        get_transport(transport).server_entry(server)  # unknown names fail here, before a process starts
        name = name or transport
        log_path = self.log_dir / f"{name}.log"
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = open(log_path, "ab")
        except OSError as exc:
            raise UserError(f"cannot write the log {log_path}: {exc.strerror}") from None
        env = dict(os.environ, PYTHONUNBUFFERED="1", **{AMQP_URL_ENV: config.amqp_url})
        try:
            process = subprocess.Popen(
                serve_command(transport, config, server),
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=lambda: child_setup(cpus),
                env=env,
            )
        except BaseException:
            log.close()
            raise
        return Starting(self, Service(name, transport, "", process, log_path, tuple(cpus),
                                      config.control), log, timeout)

    def stop_all(self) -> None:
        while self.services:
            self.services.pop().stop()


@dataclass
class Starting:
    """A service spawned and not yet ready."""

    launcher: Launcher
    service: Service
    log: BinaryIO
    timeout: float

    def ready(self) -> Service:
        """Wait for the readiness line; the service is the launcher's (stopped by stop_all)
        from then on. A service that never gets ready is killed, and the error says why."""
        service, log = self.service, self.log
        try:
            service.url = _await_ready(service.process, self.timeout, log)
        except BaseException:
            kill_group(service.process)
            log.close()
            raise
        service._drain = threading.Thread(
            target=_drain, args=(service.process, log), name=f"drain-{service.name}", daemon=True
        )
        service._drain.start()
        self.launcher.services.append(service)
        return service


def _await_ready(process: subprocess.Popen[bytes], timeout: float, log: object) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(process.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UserError(
                    f"target did not become ready within {timeout:.0f} s; see {log.name}"  # type: ignore[attr-defined]
                )
            if not sel.select(remaining):
                continue
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                process.wait()
                raise UserError(_exit_message(process.returncode, log))
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode(errors="replace")
                if text.startswith(READY_PREFIX):
                    return str(json.loads(text[len(READY_PREFIX):])["url"])
                log.write(line + b"\n")  # type: ignore[attr-defined]


def _exit_message(code: int | None, log: object) -> str:
    log.flush()  # type: ignore[attr-defined]
    lines = Path(log.name).read_text(errors="replace").strip().splitlines()  # type: ignore[attr-defined]
    last = lines[-1] if lines else "no output"
    last = last.removeprefix("commbench: ")
    return f"target exited before it was ready (exit code {code}): {last}"


def _drain(process: subprocess.Popen[bytes], log: object) -> None:
    assert process.stdout is not None
    with contextlib.suppress(ValueError, OSError):
        for line in iter(process.stdout.readline, b""):
            log.write(line)  # type: ignore[attr-defined]
    with contextlib.suppress(Exception):
        log.close()  # type: ignore[attr-defined]
