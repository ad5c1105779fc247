"""Waiting on a subprocess's output with a deadline of its own (never only pytest-timeout's)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time


class NoLine(AssertionError):
    """The line never came: the process ended, or the deadline passed."""


def read_until(proc: subprocess.Popen, prefix: str, timeout: float) -> str:
    """Read proc's stdout (a pipe nothing has read yet) until a line starts with `prefix`;
    return everything read, that line included. Raises NoLine, with what was read and the
    process's stderr when it has ended, if the process closes its stdout or `timeout`
    seconds pass first. Reads the pipe's file descriptor itself, so a later
    proc.communicate() returns the rest of the output."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    buf = b""
    while True:
        lines = buf.split(b"\n")
        for i, line in enumerate(lines[:-1]):  # complete lines only
            if line.decode(errors="replace").startswith(prefix):
                return b"\n".join(lines[: i + 1]).decode(errors="replace") + "\n"
        left = deadline - time.monotonic()
        if left <= 0:
            raise NoLine(f"no line starting {prefix!r} within {timeout:g} s; read:\n"
                         f"{buf.decode(errors='replace')}")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            err = proc.stderr.read() if proc.stderr is not None and proc.poll() is not None \
                else ""
            raise NoLine(f"stdout closed before a line starting {prefix!r}; read:\n"
                         f"{buf.decode(errors='replace')}\nstderr:\n{err}")
        buf += chunk


def wait_until(check, timeout: float, what: str, interval: float = 0.1):
    """Poll `check()` until it returns a true value (returned); fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)
    return value


def still_running(processes: list, timeout: float) -> list:
    """The processes that have not exited within `timeout` s. A zombie has exited: it waits
    only for its parent to reap it, and an orphan's parent is PID 1, which here (a
    container's init) reaps late on a busy machine, so psutil.wait_procs alone would count
    it as alive."""
    import psutil

    deadline = time.monotonic() + timeout
    left = list(processes)
    while True:
        _, left = psutil.wait_procs(left, timeout=min(0.5, max(deadline - time.monotonic(), 0)))
        running = []
        for p in left:
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    running.append(p)
            except psutil.NoSuchProcess:
                pass
        if not running or time.monotonic() >= deadline:
            return running
        left = running


def as_a_terminal_starts_it() -> None:
    """preexec_fn: Ctrl-C's signal at its default, as a shell leaves it for a foreground
    command. A child inherits an ignored SIGINT (a background job's convention, which
    commbench respects), and a pytest-xdist worker may have had it ignored by then."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ignores(pid: int, sig: int) -> bool:
    """Whether process `pid` ignores `sig` (its SigIgn mask in /proc)."""
    with open(f"/proc/{pid}/status") as f:
        mask = next(int(ln.split()[1], 16) for ln in f if ln.startswith("SigIgn:"))
    return bool(mask & (1 << (sig - 1)))
