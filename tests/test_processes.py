"""`commbench run --processes auto`: one generator process per core not given to targets,
at least one; bad values are a one-line error. The real run is in test_probe_run.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.errors import UserError
from harness.run.options import (
    RunOptions,
    auto_processes,
    load_cores,
    parse_processes,
    settle_processes,
    spare_cores_hint,
)

CPUS = tuple(sorted(os.sched_getaffinity(0)))


def test_parse_processes() -> None:
    assert parse_processes("auto") is None and parse_processes(" AUTO ") is None
    assert parse_processes("2") == 2
    with pytest.raises(UserError, match="--processes takes a number of processes or auto"):
        parse_processes("many")
    with pytest.raises(UserError, match="--processes must be at least 1, got 0"):
        parse_processes("0")


def test_the_cores_not_given_to_targets() -> None:
    last = CPUS[-1:]
    assert load_cores(last, ()) == CPUS[:-1]  # every CPU but the target's
    assert load_cores(last, last) == ()  # the generator pinned onto the target's CPU
    assert load_cores((), ()) == ()  # targets unpinned: they may run on every CPU
    assert load_cores((), (), targets_local=False) == CPUS  # all targets reached by URL
    assert load_cores(last, CPUS, targets_local=False) == CPUS


def test_auto_is_one_process_per_free_core_and_at_least_one() -> None:
    assert auto_processes((), ()) == 1
    assert auto_processes(CPUS[-1:], CPUS[-1:]) == 1
    assert auto_processes(CPUS[-1:], ()) == max(1, len(CPUS) - 1)
    assert auto_processes((), (), targets_local=False) == len(CPUS)  # memory permitting


def test_settle_resolves_auto_and_says_so() -> None:
    opts = RunOptions("quick", processes_auto=True, target_cpus=CPUS[-1:])
    note = settle_processes(opts, targets_local=True)
    assert opts.processes == max(1, len(CPUS) - 1)
    assert opts.arguments()["processes"] == "auto"
    free = ",".join(map(str, CPUS[:-1]))
    want = (f"CPU(s) {free} not given to targets" if free else
            "no CPU free of targets (pin them with --target-cpus)")
    assert note == f"--processes auto: {opts.processes} generator process(es), {want}"
    given = RunOptions("quick", processes=1)
    assert settle_processes(given, targets_local=True) is None and given.processes == 1


def test_a_saturation_warning_names_idle_cores() -> None:
    """One process while cores free of targets idle: the warning says more may keep up."""
    remote = RunOptions("quick", processes=1)  # every target reached by URL
    hint = spare_cores_hint(remote, targets_local=False)
    if len(CPUS) >= 2:
        assert hint == (f"; {len(CPUS)} CPU(s) not given to targets ran 1 generator "
                        f"process(es): more (--processes auto: {len(CPUS)}) may keep up")
    else:
        assert hint == ""
    enough = RunOptions("quick", processes=len(CPUS))
    assert spare_cores_hint(enough, targets_local=False) == ""
    assert spare_cores_hint(RunOptions("quick"), targets_local=True) == ""  # no free core


@pytest.mark.parametrize(("value", "message"), [
    ("many", "commbench: --processes takes a number of processes or auto, got 'many'"),
    ("0", "commbench: --processes must be at least 1, got 0"),
])
def test_bad_processes_is_one_line_and_exit_2(value: str, message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", "quick",
                           "--processes", value], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == message
