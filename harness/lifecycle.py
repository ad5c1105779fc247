"""Process hygiene shared by everything that starts processes: children die with their
parent (even a SIGKILLed one), clean-up is not cut short by a second signal, and every
signal a command can catch stops it the way Ctrl-C does.

`stop_on_signals` is called once, by the CLI's `main()`: SIGTERM and SIGHUP (a dropped ssh
session) raise `Interrupt`, a KeyboardInterrupt, so every `except KeyboardInterrupt` that
keeps a partial result handles them too. A closed stdout (`| head`, a reader that quit)
is the same: the stream is swapped for /dev/null, so no later print fails, and the command
is interrupted with SIGPIPE's exit code. SIGPIPE itself is not made an interrupt: Python
ignores it so that a socket whose peer died raises an error where it is used, and a
handler would turn a dying target's socket into a stopped run; the handler below only acts
when stdout is the pipe that closed. An Interrupt that Python swallows (raised in an
at-fork hook while a target is spawned, say) is raised again (`_unraisable`).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

_PR_SET_PDEATHSIG = 1
# Signals a terminal sends to the whole foreground process group (Ctrl-C, a hang-up).
TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGHUP)
# Signals that stop a command; clean-up ignores them so it is not cut short.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE)
AMQP_LIBRARIES = ("aiormq", "aio_pika")


class Interrupt(KeyboardInterrupt):
    """A signal (or a closed stdout) that stops a command as Ctrl-C does; the CLI exits
    128 + the signal's number."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signum)
        self.signum = signum
        self.note = ""  # what the command kept, e.g. "partial result in results/…"

    @property
    def cause(self) -> str:
        """Short, for a target's error: what stopped it."""
        return {signal.SIGINT: "Ctrl-C", signal.SIGPIPE: "stdout closed"}.get(
            self.signum, signal.Signals(self.signum).name)

    @property
    def reason(self) -> str:
        return {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated (SIGTERM)",
                signal.SIGHUP: "hang-up (SIGHUP): the terminal went away",
                signal.SIGPIPE: "stdout was closed"}.get(self.signum, f"signal {self.signum}")


def exit_code(exc: BaseException) -> int:
    """128 + the signal that stopped the command (130 for a plain Ctrl-C)."""
    return 128 + int(getattr(exc, "signum", signal.SIGINT))


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group (stragglers the leader forked) and reap the leader."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def stop_group(process: subprocess.Popen[bytes], timeout: float,
               polite: Sequence[int] = (signal.SIGCONT, signal.SIGTERM),
               whole_group: bool = True) -> int | None:
    """Ask a process (group) to stop with `polite` signals, give it `timeout` seconds to write
    what it holds, then kill the group: the one way every started process ends.

    SIGCONT comes first because a paused (SIGSTOPped) process cannot handle SIGTERM."""
    if process.poll() is None:
        for sig in polite:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if whole_group:
                    os.killpg(process.pid, sig)
                else:
                    process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    kill_group(process)
    return process.returncode


def child_setup(cpus: Sequence[int] = (), death_signal: int = signal.SIGKILL) -> None:
    """Run in a new child (preexec_fn, or first thing in a worker): ask the kernel to send
    `death_signal` when the parent dies, and pin to `cpus` when given. The kernel follows the
    parent *thread* that started the child: start long-lived children from the main thread,
    never from a thread that ends before them (it would kill them as it ends)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, death_signal)
    if cpus:
        os.sched_setaffinity(0, set(cpus))


def ignore_terminal_signals() -> None:
    """In a helper process of the parent's process group: Ctrl-C and a hang-up reach the
    whole group, but the parent alone decides when its helpers stop (and collects what
    they measured first)."""
    for s in TERMINAL_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """While stopping things: a second Ctrl-C, SIGTERM or hang-up must not leave processes
    behind."""
    old = {s: signal.signal(s, signal.SIG_IGN) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# -- the CLI's one installation ---------------------------------------------------------

_stdout_closed = threading.Event()
_RESEND_S = 0.005  # long past any at-fork hook or finaliser, short beside any command


def stop_on_signals() -> None:
    """Make SIGTERM, SIGHUP and a closed stdout stop the command like Ctrl-C (see above)."""
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _raise_interrupt)
    signal.signal(signal.SIGPIPE, _on_sigpipe)
    sys.unraisablehook = _unraisable
    sys.stdout = _Guarded(sys.stdout, closes_command=True)  # type: ignore[assignment]
    sys.stderr = _Guarded(sys.stderr, closes_command=False)  # type: ignore[assignment]
    threading.Thread(target=_watch_stdout, name="stdout-watch", daemon=True).start()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise Interrupt(signum)


def _unraisable(unraisable: Any) -> None:
    """A handler's Interrupt raised where Python cannot propagate it (an at-fork hook, a
    __del__, a weakref callback) is reported here and would be lost: the command would go
    on as if never stopped. Send the signal to the main thread again a moment later, from
    another thread (sent now, it would be raised inside this hook); should that one land
    in such a place too, it comes back here and is sent once more."""
    exc = unraisable.exc_value
    if not isinstance(exc, KeyboardInterrupt):
        sys.__unraisablehook__(unraisable)
        return
    resend = threading.Timer(_RESEND_S, signal.pthread_kill,
                             (threading.main_thread().ident,
                              getattr(exc, "signum", signal.SIGINT)))
    resend.daemon = True
    resend.start()


def _on_sigpipe(signum: int, frame: object) -> None:
    if _stdout_closed.is_set():  # not a socket's: the reader of our output has gone
        raise Interrupt(signum)


def _output_closed(fd: int, closes_command: bool) -> None:
    """A standard stream is gone: point it at /dev/null, so later writes succeed, and for
    stdout stop the command (SIGPIPE to ourselves: the handler runs in the main thread)."""
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)
    if closes_command and not _stdout_closed.is_set():
        _stdout_closed.set()
        os.kill(os.getpid(), signal.SIGPIPE)


def stdout_closed() -> None:
    """Stdout's reader has gone (noticed by a write that bypassed the guard): silence it."""
    with contextlib.suppress(OSError, AttributeError):
        _output_closed(sys.__stdout__.fileno(), closes_command=False)  # type: ignore[union-attr]


def _watch_stdout() -> None:
    """Notice a reader that goes away while nothing is printed (a quiet measurement): a
    pipe's write end reports POLLERR, a hung-up terminal POLLHUP."""
    fd = sys.__stdout__.fileno() if sys.__stdout__ is not None else 1
    poller = select.poll()
    poller.register(fd, 0)  # errors and hang-ups only
    with contextlib.suppress(OSError):
        for _, events in poller.poll():
            if events & (select.POLLERR | select.POLLHUP):
                _output_closed(fd, closes_command=True)


class _Guarded:
    """A standard stream whose writes never raise: a closed pipe (EPIPE) or a hung-up
    terminal (EIO) must not fail the measurement or its clean-up."""

    def __init__(self, stream: TextIO, *, closes_command: bool) -> None:
        self._stream = stream
        self._closes = closes_command

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (OSError, ValueError):
            self._lost()
            return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):
            self._lost()

    def _lost(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            _output_closed(self._stream.fileno(), self._closes)
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()  # drop what the buffer still holds (now to /dev/null)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


# -- library logs -----------------------------------------------------------------------

class _OneLine(logging.Handler):
    """The AMQP client libraries log a traceback and a line per callback when the broker
    closes a connection; a user needs one line, once, and the run records the outcome."""

    def __init__(self, where: str) -> None:
        super().__init__(logging.WARNING)
        self.where = where
        self.said = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.said:
            return
        self.said = True
        from targets.redact import redact_text

        text = record.getMessage().strip().splitlines()[0] if record.getMessage().strip() else ""
        if record.exc_info and record.exc_info[1] is not None:
            text = f"{text}: {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        where = f"{self.where}: " if self.where else ""
        sys.stderr.write(f"commbench: {where}broker connection: {redact_text(text)[:300]}"
                         " (later messages of the AMQP client library are not shown)\n")


def amqp_logs_one_line(where: str) -> None:
    """Replace the AMQP libraries' tracebacks on a lost broker by one line on stderr."""
    handler = _OneLine(where)
    for name in AMQP_LIBRARIES:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False


@contextlib.contextmanager
def amqp_logs_off() -> Iterator[None]:
    """Around a best-effort broker operation that reports its own failure (a clean-up
    after the broker is gone): the libraries' messages would only repeat it."""
    loggers = [logging.getLogger(name) for name in AMQP_LIBRARIES]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)  # their child loggers inherit it
    try:
        yield
    finally:
        for lg, level in zip(loggers, before, strict=True):
            lg.setLevel(level)


def as_a_server() -> None:
    """`commbench serve`: its stdout is a log file and its sockets' broken pipes are plain
    errors (SIGPIPE ignored again, as Python has it), and its log keeps the AMQP libraries'
    full messages (amqp_logs_one_line undone)."""
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    for name in AMQP_LIBRARIES:
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
