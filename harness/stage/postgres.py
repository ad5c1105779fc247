"""The PostgreSQL a run or a test uses: the one at a URL when it answers, otherwise a private
cluster.

A private cluster is isolated from a system PostgreSQL on the same machine: `initdb` into
a temporary directory, its own port (free, loopback only) and its own Unix socket folder.
Its postmaster is our child (started directly, not daemonised by `pg_ctl start`, so it
cannot outlive us): its own process group, a parent-death signal, and on every exit path a
`pg_ctl stop -m fast`, then SIGKILL of the group and removal of the directory. As root, the
cluster runs as the `postgres` user (PostgreSQL refuses to run as root). This module prints
nothing; timings come back in PostgresInfo.

Isolation within one PostgreSQL: `scratch_database` gives a test a database of its own and
drops it afterwards; `drop_schema` removes the schema a run's target used.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from harness.errors import UserError
from harness.lifecycle import child_setup, kill_group
from harness.stage.private import running
from targets.redact import redact

PG_BIN = Path(os.environ.get("COMMBENCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PROBE_TIMEOUT_S = 3.0
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.1  # pacing of readiness probes of the postmaster
NOT_INSTALLED = (f"PostgreSQL is not installed ({PG_BIN}/initdb is missing): run "
                 "`sudo apt-get install -y postgresql` or pass a --store URL of a running server")
NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class PostgresInfo:
    url: str  # of the `postgres` database, as the superuser
    private: bool
    startup_s: float
    data_dir: Path | None = None
    log: Path | None = None


def _run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine on a fresh loop in a worker thread, so callers inside a running event
    loop (async tests) can use this module too."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0] if result else None


async def _execute(url: str, *statements: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=timeout)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


def problem(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when PostgreSQL at `url` accepts a connection (TCP, auth, the database), else
    why not, in one line."""
    try:
        _run_async(_execute(url, "SELECT 1", timeout=timeout))
    except Exception as exc:
        text = str(exc).splitlines()[0] if str(exc) else ""
        return f"{type(exc).__name__}: {text}".rstrip(": ")
    return None


def check_reachable(url: str) -> None:
    """UserError, one line, unless PostgreSQL at `url` answers."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise UserError(f"--store {url!r}: a PostgreSQL store is a postgresql://USER@HOST:PORT/DB URL")
    why = problem(url)
    if why is not None:
        raise UserError(f"--store: PostgreSQL at {redact(url)} does not answer ({why})")


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


@contextlib.contextmanager
def scratch_database(url: str, prefix: str = "cb") -> Iterator[str]:
    """A new, empty database on the server at `url` (a URL to it), dropped on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _run_async(_execute(url, f"CREATE DATABASE {name}"))
    try:
        yield with_database(url, name)
    finally:
        _run_async(_execute(url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def drop_schema(url: str, schema: str) -> bool:
    """Remove a schema and everything in it. Best effort: clean-up never masks an outcome."""
    if not NAME.match(schema):
        return False
    try:
        _run_async(_execute(url, f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    except Exception:
        return False
    return True


@contextlib.contextmanager
def ensure_postgres(url: str = DEFAULT_URL, work_dir: Path | None = None, *,
                    private: bool = False) -> Iterator[PostgresInfo]:
    """Yield a PostgreSQL that answers: `url` if it does, else a private cluster (stopped and
    removed on exit). `private`: always a private cluster."""
    start = time.monotonic()
    if not private and problem(url) is None:
        yield PostgresInfo(url, private=False, startup_s=time.monotonic() - start)
        return
    with private_postgres(work_dir) as info:
        yield info


@contextlib.contextmanager
def private_postgres(work_dir: Path | None = None) -> Iterator[PostgresInfo]:
    if not os.access(PG_BIN / "initdb", os.X_OK) or not os.access(PG_BIN / "postgres", os.X_OK):
        raise UserError(NOT_INSTALLED)
    user = _cluster_user()
    if user is not None:  # root's folders (pytest's, 0700) are closed to the postgres user
        work_dir = None
    with running(lambda base: _Cluster(base, user), "commbench-pg-", work_dir) \
            as (cluster, startup_s):
        yield PostgresInfo(cluster.url, private=True, startup_s=startup_s,
                           data_dir=cluster.data, log=cluster.log)


class _Cluster:
    """One private cluster: initdb'd data, a postmaster we own, a socket folder of its own."""

    def __init__(self, base: Path, user: pwd.struct_passwd | None) -> None:
        self.base = base
        self.data, self.sockets, self.log = base / "data", base / "run", base / "postgres.log"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.process: subprocess.Popen[bytes] | None = None
        self.ready = False
        self.user = user
        self.sockets.mkdir()
        if self.user is not None:
            for path in (base, self.sockets):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def _spawn(self, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as log:
            if self.user is not None:
                os.chown(self.log, self.user.pw_uid, self.user.pw_gid)
            return subprocess.Popen(argv, cwd=self.base, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=self._as_owner, env=self._env(), **kw)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", HOME=str(self.base))
        return env

    def _as_owner(self) -> None:
        """In the child: become the cluster's user, then ask for the parent-death signal
        (a change of credentials clears it, so it must come after)."""
        if self.user is not None:
            os.setgid(self.user.pw_gid)
            os.setuid(self.user.pw_uid)
        child_setup(())

    def start(self) -> float:
        start = time.monotonic()
        deadline = start + READY_TIMEOUT_S
        initdb = self._spawn([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                              "--auth=trust", "-E", "UTF8", "--no-sync"])
        try:
            code = initdb.wait(READY_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            kill_group(initdb)
            raise UserError(f"initdb did not finish within {READY_TIMEOUT_S:.0f} s; "
                            f"see {self.log}") from None
        if code != 0:
            raise UserError(f"initdb exited with code {code}; see {self.log}")
        self.process = self._spawn([
            str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port),
            "-k", str(self.sockets), "-c", "listen_addresses=127.0.0.1",
            "-c", "max_connections=200", "-c", "logging_collector=off"])
        self._wait(lambda: problem(self.url, timeout=1.0) is None, deadline)
        self.ready = True
        return time.monotonic() - start

    def _wait(self, check: Callable[[], bool], deadline: float) -> None:
        assert self.process is not None
        while not check():
            if self.process.poll() is not None:
                raise UserError(f"private postgres exited with code {self.process.returncode} "
                                f"before it was ready; see {self.log}")
            if time.monotonic() > deadline:
                raise UserError(f"private postgres was not ready within {READY_TIMEOUT_S:.0f} s; "
                                f"see {self.log}")
            time.sleep(POLL_INTERVAL_S)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                stop = self._spawn([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                                    "-t", str(int(STOP_TIMEOUT_S)), "-w", "stop"])
                stop.wait(STOP_TIMEOUT_S)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_TIMEOUT_S)
        kill_group(self.process)


def _cluster_user() -> pwd.struct_passwd | None:
    """The user the cluster runs as: `postgres` when we are root (PostgreSQL refuses root),
    else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise UserError("a private PostgreSQL cannot run as root and there is no `postgres` "
                        "user: install the postgresql package or run as another user") from None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def describe(info: PostgresInfo) -> str:
    if info.private:
        return f"started a private PostgreSQL at {info.url} in {info.startup_s:.1f} s"
    return f"using the PostgreSQL at {redact(info.url)}"
