"""The generator's collector policy (harness/load/heap.py): what a run's `gc` figures mean.
Pure logic, in a child process where it changes the collector (the test process keeps its own)."""

from __future__ import annotations

import json
import subprocess
import sys

from harness.load.heap import GcPauses, GcWatch

CHILD = """
import gc, json
from harness.load.heap import GEN0_THRESHOLD, settle_heap
before = gc.get_threshold()
settle_heap()
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count(),
                  "gen0": GEN0_THRESHOLD}))
"""


def test_settle_heap_freezes_the_heap_and_raises_only_the_young_threshold():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                         timeout=60, check=True)
    got = json.loads(out.stdout)
    assert got["frozen"] > 1000  # the imported heap is out of every collection
    assert got["after"] == [got["gen0"], got["before"][1], got["before"][2]]
    assert got["after"][0] > got["before"][0]


def test_the_watch_times_collections_only_while_it_is_started():
    import gc

    pauses = GcPauses()
    watch = GcWatch(pauses)
    gc.collect()  # not started: not counted
    watch.start()
    try:
        gc.collect()
        gc.collect(0)
    finally:
        watch.stop()
    gc.collect()  # stopped: not counted
    assert pauses.collections == 2
    assert 0 < pauses.max_ms <= pauses.total_ms
    total = GcPauses(1, 5.0, 5.0)
    total.add(pauses)
    assert total.collections == 3 and total.max_ms == max(5.0, pauses.max_ms)
    assert total.record() == {"collections": 3, "total_ms": round(5.0 + pauses.total_ms, 3),
                              "max_ms": round(total.max_ms, 3)}
