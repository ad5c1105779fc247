"""Every `commbench locust` option checked before anything starts: a target stood up and
gated only for locust to refuse its arguments wastes the user's time and prints locust's
argparse text about options they never gave (a `--spawn-rate 0` derived from `-u 0`).

Our own options are checked here, in locust's terms (its time span format, its bounds);
anything after `--` goes to locust unchanged, so locust's own parser judges it, in a
subprocess (importing locust here would monkey-patch this process with gevent).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from typing import Protocol

from harness.errors import UserError
from targets.registry import TRANSPORTS

MAX_USERS = 100_000  # locust users (greenlets) across every worker
MAX_SPAWN_RATE = 100_000.0  # users started per second
MAX_WORKERS = 1000
MAX_SPAN_S = 24 * 3600  # -t and --warmup, as a scenario's durations
_TIMESPAN = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
TIMESPAN_HELP = "locust's format: 20, 20s, 3m, 2h, 1h20m or 3h30m10s (whole seconds)"
PARSE_TIMEOUT_S = 60.0


class Options(Protocol):
    users: int | None
    spawn_rate: float | None
    run_time: str | None
    expect_workers: int
    master: bool
    worker: bool
    web: bool
    extra: list[str]


def timespan_s(text: str) -> int | None:
    """Seconds of a locust time span ("90", "30s", "1h20m"), None when locust would refuse
    it or read it otherwise than it looks ("500ms" is 500 minutes to locust)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    m = _TIMESPAN.fullmatch(text)
    if not text or not m:
        return None
    return int(m["h"] or 0) * 3600 + int(m["m"] or 0) * 60 + int(m["s"] or 0)


def check_options(opts: Options, warmup_s: float, scenario_name: str) -> None:
    """UserError naming the first option locust would refuse or that would measure nothing."""
    if opts.worker:  # a worker takes users, rate and run time from its master
        return
    if warmup_s > MAX_SPAN_S:
        raise UserError(f"--warmup {warmup_s:g} s: at most 24h")
    if opts.users is not None and not 1 <= opts.users <= MAX_USERS:
        raise UserError(f"-u/--users must be from 1 to {MAX_USERS:,}, got {opts.users}"
                        + (": no user would send a request, so nothing would be measured"
                           if opts.users == 0 else ""))
    if opts.spawn_rate is not None and not 0 < opts.spawn_rate <= MAX_SPAWN_RATE:
        raise UserError(f"-r/--spawn-rate must be more than 0 and at most {MAX_SPAWN_RATE:,.0f} "
                        f"users per second, got {opts.spawn_rate:g}")
    if opts.master and not 1 <= opts.expect_workers <= MAX_WORKERS:
        raise UserError(f"--expect-workers must be from 1 to {MAX_WORKERS}, "
                        f"got {opts.expect_workers}")
    if opts.run_time is not None:
        run_s = timespan_s(opts.run_time)
        if run_s is None or run_s == 0:
            raise UserError(f"-t/--run-time {opts.run_time!r}: use {TIMESPAN_HELP}, more than 0")
        if run_s > MAX_SPAN_S:
            raise UserError(f"-t/--run-time {opts.run_time!r}: at most 24h")
        if warmup_s > 0 and run_s <= warmup_s:
            raise UserError(f"-t {opts.run_time} is not longer than the {warmup_s:g} s warm-up "
                            f"of {scenario_name}: nothing would be measured; use --warmup 0s or "
                            f"a -t longer than {warmup_s:g}s")


def check_locust_arguments(command: Sequence[str]) -> None:
    """Let locust's own parser judge the whole command line (our options and anything after
    `--`) without running anything; UserError with its complaint."""
    args = list(command[command.index("locust") + 1:]) if "locust" in command else list(command)
    code = ("import sys\n"
            "from locust.argument_parser import parse_options\n"
            "parse_options(sys.argv[1:])\n")
    try:
        p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                           timeout=PARSE_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return  # locust will judge them itself when it starts
    if p.returncode != 0:
        errors = [ln for ln in p.stderr.splitlines() if "error:" in ln]
        said = errors[-1].split("error:", 1)[1].strip() if errors else \
            (p.stderr.strip().splitlines() or ["exit code " + str(p.returncode)])[-1]
        raise UserError(f"locust refuses these arguments: {said}")


def one_url(value: str | None, target: str) -> str | None:
    """locust's --url: NAME=URL (as run and verify take it) or the URL alone (one target)."""
    if value is None:
        return None
    name, sep, rest = value.partition("=")
    if not (sep and name in TRANSPORTS and rest):
        return value
    if name != target.partition("@")[0].partition(":")[0]:
        raise UserError(f"--url names {name!r}, which is not the --target ({target})")
    return rest
