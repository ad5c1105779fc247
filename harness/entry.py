"""How every `commbench` command ends: one line for an error the user can fix (exit 2), 1 for
a failed order call, 128 + the signal when a signal (or a closed stdout) stopped it. Usage
errors never show a traceback."""

from __future__ import annotations

import signal
import sys
from typing import NoReturn

import click
import typer

from harness import lifecycle
from harness.errors import UserError
from reports.errors import ReportError
from targets.core.errors import OrderError
from targets.serving import ServeError

# typer ships its own copy of click; catch both so a usage error is never a traceback.
_EXITS: tuple[type[BaseException], ...] = (typer.Exit, click.exceptions.Exit)
_USAGE_ERRORS: tuple[type[BaseException], ...] = (click.ClickException,)
_ABORTS: tuple[type[BaseException], ...] = (typer.Abort, click.exceptions.Abort)
try:
    from typer._click import exceptions as _typer_click

    _USAGE_ERRORS += (_typer_click.ClickException,)
except ImportError:  # an older typer that uses click itself
    pass


def _invoke(app: typer.Typer, args: list[str]) -> object:
    """Run the command, letting a KeyboardInterrupt through: typer's own main would turn it
    into exit code 130 whatever the signal was."""
    command = typer.main.get_command(app)
    with command.make_context("commbench", args) as ctx:
        return command.invoke(ctx)


def _interrupt(exc: BaseException) -> lifecycle.Interrupt:
    """The Interrupt behind an exception (click turns a KeyboardInterrupt into Abort)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, lifecycle.Interrupt):
            return seen
        seen = seen.__cause__ or seen.__context__
    return lifecycle.Interrupt()


def run_app(app: typer.Typer) -> None:
    """Entry point: one-line errors, exit 2 for user errors, 128 + the signal when a signal
    (or a closed stdout) stopped the command: 130 Ctrl-C, 129 hang-up, 141 closed stdout,
    143 SIGTERM."""
    try:
        # Inside the try: a reader already gone makes the stdout watcher signal us while
        # this installs it, and that stop must end as any other closed stdout does.
        lifecycle.stop_on_signals()
        lifecycle.amqp_logs_one_line("")
        rv = _invoke(app, sys.argv[1:])
    except _EXITS as exc:
        sys.exit(exc.exit_code)
    except _USAGE_ERRORS as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (*_ABORTS, KeyboardInterrupt) as exc:
        _stopped(_interrupt(exc))
    except BrokenPipeError:  # a writer that bypassed the guarded stdout (click may)
        lifecycle.stdout_closed()
        _stopped(lifecycle.Interrupt(signal.SIGPIPE))
    except (UserError, ServeError, ReportError) as exc:
        sys.stderr.write(f"commbench: {exc}\n")
        sys.exit(2)
    except OrderError as exc:
        sys.stderr.write(f"commbench: {exc.kind}: {exc}\n")
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


def _stopped(stop: lifecycle.Interrupt) -> NoReturn:
    """Say why the command stopped and what it kept; exit 128 + the signal. A closed stdout
    that cost nothing (`commbench scenarios | head`: the reader had what it wanted) is
    silent, as `yes | head` is; a run it cut short says where its partial result is."""
    if stop.signum != signal.SIGPIPE or stop.note:
        sys.stderr.write(f"commbench: {stop.reason}" + (f"; {stop.note}" if stop.note else "")
                         + "\n")
    sys.exit(lifecycle.exit_code(stop))
