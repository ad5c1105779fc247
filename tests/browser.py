"""Debian's headless Chromium for the tests that look at pages as a user's browser does.

One binary, one set of flags, one way to start and stop it, for the report and the locust
web UI alike.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from harness.lifecycle import stop_group

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Quiet and offline: no first-run pages, no background fetches, a fixed window.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--window-size=1280,900"]


class Chromium:
    """A headless Chromium with its own profile, stopped (and its profile removed) on exit."""

    def __enter__(self) -> Chromium:
        assert CHROMIUM is not None, "needs Debian's chromium: make test installs it " \
                                     "(or apt-get install -y chromium)"
        # A browser that dies while starting (seen once in CI, not reproduced in over 100 starts
        # here) is the browser's failure, not the report's: start it again, at most twice,
        # and if it never comes up say how it ended and what it printed.
        failures: list[str] = []
        for _ in range(3):
            failure = self._start()
            if failure is None:
                return self
            hung = self.proc.poll() is None  # a hang is a finding to read, not to retry
            self._stop()
            failures.append(failure)
            if hung:
                break
        raise RuntimeError(f"chromium did not open its DevTools port in {len(failures)} "
                           f"starts: {failures}")

    def _start(self) -> str | None:
        """Start chromium; None once it serves DevTools, else how the start failed."""
        self.profile = tempfile.mkdtemp(prefix="commbench-chromium-")
        self.log = Path(tempfile.mkstemp(prefix="commbench-chromium-", suffix=".log")[1])
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [CHROMIUM, *FLAGS, "--remote-debugging-port=0",
                 f"--user-data-dir={self.profile}", "about:blank"],
                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        port_file = Path(self.profile) / "DevToolsActivePort"
        started = time.monotonic()
        while not (port_file.exists() and port_file.read_text().strip()):
            elapsed = time.monotonic() - started
            if self.proc.poll() is not None or elapsed > 60:
                ended = (f"exited {self.proc.returncode}" if self.proc.poll() is not None
                         else "timed out")
                tail = self.log.read_text(errors="replace").splitlines()[-5:]
                return f"{ended} after {elapsed:.1f} s; its last lines: {tail}"
            time.sleep(0.05)  # polling a file chromium writes; not a stand-in for sync
        self.port = int(port_file.read_text().split()[0])
        return None

    def _stop(self) -> None:
        stop_group(self.proc, timeout=10)  # its renderers and zygote too
        shutil.rmtree(self.profile, ignore_errors=True)
        self.log.unlink(missing_ok=True)

    def __exit__(self, *exc: object) -> None:
        self._stop()
