"""The signal-to-Interrupt mechanism every command uses (`harness.lifecycle`), in a real
child process, where Python would otherwise swallow the Interrupt."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The signal reaches the main thread while it runs an at-fork hook, as when stdout closes
# while a target is being spawned (CI: `commbench run … | head -2`). Python reports an
# exception raised there as "Exception ignored" and carries on, so an Interrupt raised
# by the handler there would be lost. The hook sends the signal thread-directed to the
# main thread, so the handler runs inside the hook, on its next bytecodes.
CHILD = textwrap.dedent("""
    import os, signal, sys, threading, time
    from harness import lifecycle

    lifecycle.stop_on_signals()

    def after_fork_in_parent():
        signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
        for _ in range(1000):  # bytecodes on which the handler runs, inside this hook
            pass

    os.register_at_fork(after_in_parent=after_fork_in_parent)
    try:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # bounded: the Interrupt must come before
            time.sleep(0.01)
        print("lost", file=sys.stderr)
        sys.exit(3)
    except lifecycle.Interrupt as e:
        print(f"interrupted by {e.signum}", file=sys.stderr)
        sys.exit(lifecycle.exit_code(e))
""")


def test_an_interrupt_raised_where_python_swallows_exceptions_is_raised_again() -> None:
    p = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert p.stderr.splitlines() == [f"interrupted by {int(signal.SIGTERM)}"], p.stderr
    assert p.returncode == 128 + signal.SIGTERM
