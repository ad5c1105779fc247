"""Recording and merging: histograms recorded in separate OS processes merge exactly into
the histogram of all values; seconds close in order; warm-up never leaks into measurement."""

from __future__ import annotations

import multiprocessing
import random
from concurrent.futures import ProcessPoolExecutor

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from harness.load.recorder import (
    HIGHEST_US,
    NS,
    MergedSecond,
    Merger,
    Recorder,
    SecondRecord,
    new_histogram,
)
from harness.run.results import HlogWriter

MS0 = 10 * NS  # measurement starts 10 s into the monotonic clock of these tests


def values(process: int) -> list[tuple[int, int]]:
    """(completion ns, latency ns) pairs of one simulated generator process."""
    rng = random.Random(process)
    out = []
    for _ in range(5000):
        done = MS0 + NS + rng.randrange(0, 3 * NS)  # seconds 1..3; second 0 stays empty
        out.append((done, min(int(rng.lognormvariate(14, 1.2)), 900_000_000)))  # ~1 ms median
    return sorted(out)


def record_in_process(process: int) -> list[SecondRecord]:
    """Runs in a spawned process: record, close seconds as time passes, return the records."""
    sent: list[SecondRecord] = []
    rec = Recorder(MS0, 0, sent.append)
    for done, lat in values(process):
        rec.close_until(done)
        rec.record("get", None, done - lat, done - lat // 2, done)
    rec.close_all()
    return sent


def test_merge_across_processes_is_exact():
    procs = 3
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(procs, mp_context=ctx) as pool:
        per_process = list(pool.map(record_in_process, range(procs)))
    merged: list[MergedSecond] = []
    merger = Merger(procs, merged.append)
    # Interleave arrivals as a parent would see them.
    for second in range(4):
        for p in range(procs):
            merger.add(p, per_process[p][second])
    assert [m.second for m in merged] == [0, 1, 2, 3]
    assert merged[0].hists == {}
    reference = new_histogram()
    per_second = [new_histogram() for _ in range(4)]
    for p in range(procs):
        for done, lat in values(p):
            reference.record_value(max(1, lat // 1000))
            per_second[(done - MS0) // NS].record_value(max(1, lat // 1000))
    total = merger.totals.hists[("get", "ok", "latency")]
    assert total.get_total_count() == reference.get_total_count() == 15000
    for pct in (0, 10, 50, 90, 99, 99.9, 99.99, 100):
        assert total.get_value_at_percentile(pct) == reference.get_value_at_percentile(pct)
    assert total.get_max_value() == reference.get_max_value()
    assert total.get_min_value() == reference.get_min_value()
    assert [(i.value_iterated_to, i.count_at_value_iterated_to) for i in total.get_recorded_iterator()] \
        == [(i.value_iterated_to, i.count_at_value_iterated_to)
            for i in reference.get_recorded_iterator()]
    for m, ref in zip(merged[1:], per_second[1:], strict=True):
        h = m.hists[("get", "ok", "latency")]
        assert h.get_total_count() == ref.get_total_count()
        assert h.get_value_at_percentile(99) == ref.get_value_at_percentile(99)


def test_merger_waits_for_every_process():
    out: list[int] = []
    merger = Merger(2, lambda m: out.append(m.second))
    merger.add(0, SecondRecord(0, intended=3, started=3))
    merger.add(0, SecondRecord(1, intended=2, started=2))
    assert out == []  # process 1 has not closed second 0 yet
    merger.add(1, SecondRecord(0, intended=4, started=1))
    assert out == [0]
    merger.finish(1)  # process 1 ended: second 1 only waits for process 0, which closed it
    assert out == [0, 1]
    assert (merger.totals.intended, merger.totals.started) == (9, 6)


def test_seconds_close_in_order_and_warmup_is_excluded():
    sent: list[SecondRecord] = []
    rec = Recorder(MS0, -2, sent.append, intended_in=lambda s: 10 + s)
    t = MS0 - 2 * NS
    rec.started(t + 1000, 500_000)
    rec.record("get", None, t, t + 1000, t + 2_000_000)  # warm-up, completes in warm-up
    rec.record("list", None, MS0 - 1000, MS0 - 500, MS0 + 5_000_000)  # warm-up, completes late
    rec.record("get", "timeout", MS0, MS0 + 1000, MS0 + 3 * NS // 2)  # measured error
    rec.close_until(MS0 + NS // 2)
    assert [r.second for r in sent] == [-2, -1]
    rec.close_all()
    assert [r.second for r in sent] == [-2, -1, 0, 1]
    assert sent[0].hists.keys() == {("get", "ok", "latency"), ("get", "ok", "service")}
    assert sent[0].started == 1 and sent[0].intended == 8 and sent[0].lag is not None
    assert sent[2].hists == {} and sum(r.warmup_spill for r in sent) == 1
    assert sent[3].errors == {("get", "timeout"): 1}
    assert HdrHistogram.decode(sent[3].hists[("get", "error", "latency")]).get_max_value() \
        >= 1_500_000


def test_values_beyond_range_are_clamped_and_counted():
    sent: list[SecondRecord] = []
    rec = Recorder(0, 0, sent.append)
    rec.record("get", None, 0, 0, (HIGHEST_US + 5) * 1000 * 1000 // 1000)
    rec.close_all()
    last = sent[-1]
    assert last.clamped == 2  # latency and service
    assert HdrHistogram.decode(last.hists[("get", "ok", "latency")]).get_total_count() == 1


def test_hlog_round_trip(tmp_path):
    path = tmp_path / "x.hlog"
    w = HlogWriter(path, 1_795_000_000.0, "test")
    hs = []
    for s in range(3):
        h = new_histogram()
        for v in range(1, 100 * (s + 1)):
            h.record_value(v * 10)
        w.interval("get.ok", float(s), h)
        hs.append(h)
    w.close()
    text = path.read_text()
    assert "#[Histogram log format version 1.2]" in text
    reader = HistogramLogReader(str(path), new_histogram())
    got = []
    while (h := reader.get_next_interval_histogram()) is not None:
        got.append(h)
    assert [g.get_total_count() for g in got] == [h.get_total_count() for h in hs]
    assert [g.get_tag() for g in got] == ["get.ok"] * 3
    assert got[2].get_max_value() == hs[2].get_max_value()
    assert reader.get_start_time_sec() == 1_795_000_000.0


def _three_seconds(rec: Recorder) -> None:
    for second in range(3):
        t = MS0 + second * NS
        rec.started(t + 10, 1_000 * (second + 1))
        rec.record("get", None, t, t + 10, t + 2_000_000)
        rec.record("list", "timeout", t, t + 10, t + 5_000_000)


def test_a_stepwise_close_hands_over_what_one_close_does_and_only_at_its_end():
    """The engine closes a second one histogram per loop pass (`closing`): the records are
    the same as closing in one go, and none is handed over before its last step."""
    whole: list[SecondRecord] = []
    rec = Recorder(MS0, 0, whole.append, intended_in=lambda s: 7)
    _three_seconds(rec)
    rec.close_until(MS0 + 3 * NS)

    stepped: list[SecondRecord] = []
    rec = Recorder(MS0, 0, stepped.append, intended_in=lambda s: 7)
    _three_seconds(rec)
    steps = 0
    for _ in rec.closing(MS0 + 3 * NS):
        steps += 1
        assert len(stepped) == (steps - 1) // 4  # 4 histograms a second: get and list × 2
    assert steps == 12 and stepped == whole and [r.second for r in stepped] == [0, 1, 2]


def test_a_close_stopped_midway_is_completed_by_close_all():
    """A ticker cancelled between two steps leaves the second open; close_all hands it over
    whole, once."""
    sent: list[SecondRecord] = []
    rec = Recorder(MS0, 0, sent.append, intended_in=lambda s: 7)
    _three_seconds(rec)
    steps = rec.closing(MS0 + 3 * NS)
    next(steps)
    next(steps)
    steps.close()  # what cancelling the awaiting ticker does to the generator
    assert sent == []
    rec.close_all()
    assert [r.second for r in sent] == [0, 1, 2]
    assert all(len(r.hists) == 4 and r.started == 1 and r.lag is not None for r in sent)


def test_a_close_resumed_after_close_all_hands_nothing_over_twice():
    sent: list[SecondRecord] = []
    rec = Recorder(MS0, 0, sent.append, intended_in=lambda s: 7)
    _three_seconds(rec)
    steps = rec.closing(MS0 + 3 * NS)
    next(steps)
    rec.close_all()
    for _ in steps:
        pass
    assert [r.second for r in sent] == [0, 1, 2]
