"""Reports built from real short runs: tables checked against the .hlog histograms they came
from, plots, findings, claims, the HTML file, and every kind of bad input.

Runs come from `commbench run` (tests/report_runs.py, once per session). A few pure-logic
tests use tests/resultfolder.py, which writes the same format from real HdrHistograms, for
shapes a short run cannot produce on demand (a saturated generator, identical targets)."""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from reports import plots
from reports.claims import NOT_MEASURED, REFUTED, SUPPORTED, UNDECIDED, check_claims
from reports.errors import ReportError as UserError
from reports.findings import findings, throughput_comparable
from reports.html import write_report
from reports.loader import FORMAT, load_run, load_runs
from reports.tables import METRICS, figure, figures, fmt, tables, write_tables
from tests.report_runs import (
    LABELS,
    commbench,
    copy_run,
    partial_copy,
    real_run,
    recorded_flags,
    without_manifest,
)
from tests.resultfolder import RunSpec, TargetSpec, write_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    return real_run(tmp_path_factory.getbasetemp() / "report-runs", "one-rep")


@pytest.fixture(scope="session")
def reps_dir(tmp_path_factory) -> Path:
    return real_run(tmp_path_factory.getbasetemp() / "report-runs", "two-reps")


def _hlog_merge(path: Path, operations: set[str]) -> HdrHistogram:
    """Decode an interval log with HdrHistogram's own reader, independently of reports/."""
    total = HdrHistogram(1, 3_600_000_000, 3)
    reader = HistogramLogReader(str(path), total)
    while (h := reader.get_next_interval_histogram()) is not None:
        if h.get_tag().rpartition(".")[0] in operations and h.get_tag().endswith(".ok"):
            total.add(h)
    return total


# ---- tables against the histograms -------------------------------------------------------

def test_table_percentiles_equal_the_merged_hlog_histograms(run_dir: Path) -> None:
    run = load_run(run_dir)
    df = figures(run)
    checked = 0
    for target in ("rest", "grpc"):
        for op in ("get", "list", "create", "all"):
            ops = {"get", "list", "create"} if op == "all" else {op}
            for metric, path in (("latency", f"{target}-r1-latency.hlog"),
                                 ("service", f"{target}-r1-service.hlog")):
                h = _hlog_merge(run_dir / "histograms" / path, ops)
                assert h.get_total_count() > 0
                wanted = {"p50": 50, "p90": 90, "p99": 99, "p999": 99.9} if metric == "latency" \
                    else {"service_p99": 99}
                for key, p in wanted.items():
                    expected = h.get_value_at_percentile(p) / 1000
                    got = figure(df, target, op, key).value
                    # equal within HdrHistogram's precision (3 significant digits)
                    assert got == pytest.approx(expected, rel=1e-3), (target, op, key)
                    checked += 1
                if metric == "latency":
                    assert figure(df, target, op, "max").value == pytest.approx(
                        h.get_max_value() / 1000, rel=1e-3)
                    assert figure(df, target, op, "p50").samples == h.get_total_count()
    assert checked == 2 * 4 * 5


def test_tables_agree_with_the_engines_summary(run_dir: Path) -> None:
    run = load_run(run_dir)
    df = figures(run)
    s = run.summary
    for row in s.itertuples():
        for key, col in (("p50", "latency_p50_ms"), ("p99", "latency_p99_ms"),
                         ("service_p99", "service_p99_ms"), ("throughput", "throughput_rps")):
            assert figure(df, row.target, row.operation, key).value == pytest.approx(
                getattr(row, col), abs=1e-3), (row.target, row.operation, key)
    all_rows = s[s["operation"] == "all"].set_index("target")
    for target in ("rest", "grpc"):
        assert figure(df, target, "get", "cpu").value == pytest.approx(
            all_rows.loc[target, "cpu_us_per_request"])


def test_ratios_are_against_the_best_target(run_dir: Path) -> None:
    # Each figure's ratio to the best target's, the best being the lower latency and the
    # higher throughput, checked against summary.csv read here, not the tables' own values.
    df = figures(load_run(run_dir))
    s = pd.read_csv(run_dir / "summary.csv").set_index(["operation", "target"])
    checked = 0
    for metric, column, higher in (("p50", "latency_p50_ms", False),
                                   ("p99", "latency_p99_ms", False),
                                   ("service_p99", "service_p99_ms", False),
                                   ("throughput", "throughput_rps", True)):
        for op in ("get", "list", "create", "all"):
            rest, grpc = s.loc[(op, "rest"), column], s.loc[(op, "grpc"), column]
            best = max(rest, grpc) if higher else min(rest, grpc)
            for target, value in (("rest", rest), ("grpc", grpc)):
                ratio = df.loc[(df["operation"] == op) & (df["metric"] == metric)
                               & (df["target"] == target), "ratio"].item()
                assert ratio == pytest.approx(value / best, rel=1e-3), (op, metric, target)
                assert ratio == 1.0 if value == best else (ratio < 1.0) == higher
                checked += 1
    assert checked == 4 * 4 * 2


def test_repetitions_give_a_spread_around_the_figure(reps_dir: Path) -> None:
    run = load_run(reps_dir)
    assert run.repetitions == [1, 2]
    df = figures(run)
    for target in ("rest", "grpc"):
        f = figure(df, target, "get", "p50")
        assert f.reps == 2 and f.lo <= f.hi
        per_rep = [_hlog_merge(reps_dir / "histograms" / f"{target}-r{r}-latency.hlog", {"get"})
                   .get_value_at_percentile(50) / 1000 for r in (1, 2)]
        assert (f.lo, f.hi) == pytest.approx((min(per_rep), max(per_rep)), rel=1e-3)
        t = figure(df, target, "all", "throughput")
        thr = run.summary[(run.summary["target"] == target) & (run.summary["operation"] == "all")]
        assert (t.lo, t.hi) == pytest.approx((thr["throughput_rps"].min(),
                                              thr["throughput_rps"].max()))
    md = "\n".join(f"{t.rows}" for t in tables(df))
    assert "–" in md  # the spread is shown beside figures


def test_tables_written_as_csv_and_markdown(run_dir: Path, tmp_path: Path) -> None:
    df = figures(load_run(run_dir))
    written = write_tables(df, tmp_path / "tables")
    assert {p.name for p in written} == {"figures.csv", "get.csv", "get.md", "list.csv",
                                         "list.md", "create.csv", "create.md", "all.csv",
                                         "all.md"}
    wide = pd.read_csv(tmp_path / "tables" / "get.csv", index_col="target")
    assert list(wide.index) == ["rest", "grpc"]
    assert wide.loc["grpc", "p99"] == pytest.approx(figure(df, "grpc", "get", "p99").value)
    md = (tmp_path / "tables" / "get.md").read_text()
    assert md.count("\n| ") == 3  # header + two targets
    assert fmt(figure(df, "rest", "get", "p50").value, "p50") in md
    long = pd.read_csv(tmp_path / "tables" / "figures.csv")
    assert set(long["metric"]) == {m.key for m in METRICS}


# ---- plots --------------------------------------------------------------------------------

def test_plots_are_valid_svg(run_dir: Path, tmp_path: Path) -> None:
    run = load_run(run_dir)
    df = figures(run)
    made = {
        "spectrum": plots.percentile_spectrum(run, "get"),
        "latency": plots.latency_over_time(run),
        "throughput": plots.throughput_over_time(run),
        "cpu": plots.cpu_per_request(df, run.targets),
    }
    for name, fig in made.items():
        assert fig is not None, name
        svg = plots.save(fig, tmp_path / f"{name}.svg")
        root = ET.fromstring(svg)
        assert root.tag.endswith("svg")
        assert len(root.findall(".//{http://www.w3.org/2000/svg}path")) > 5
        assert "http://" not in re.sub(r'xmlns(:\w+)?="[^"]+"|<!DOCTYPE[^>]+>|<metadata>.*?'
                                       r"</metadata>", "", svg, flags=re.S)
    legend = [t.get_text() for t in made["spectrum"].axes[0].get_legend().get_texts()]
    assert legend == [f"rest (n={figure(df, 'rest', 'get', 'p50').samples:,.0f})",
                      f"grpc (n={figure(df, 'grpc', 'get', 'p50').samples:,.0f})"]


def test_spectrum_reaches_p9999_on_a_log_axis(run_dir: Path) -> None:
    run = load_run(run_dir)
    h = run.histogram("rest", "all")
    x, y = plots.spectrum_points(h)
    assert x[0] == 1 and x[-1] == pytest.approx(10_000)
    assert list(y) == sorted(y)  # a percentile spectrum never falls
    assert y[-1] == pytest.approx(h.get_max_value() / 1000)
    ax = plots.percentile_spectrum(run, "all").axes[0]
    assert ax.get_xscale() == "log"


def test_time_plots_shade_fault_windows(run_dir: Path) -> None:
    run = load_run(run_dir)
    for fn in (plots.latency_over_time, plots.throughput_over_time):
        plain = fn(run).axes[0]
        shaded = fn(run, spans=[(1.0, 2.0, "kill inventory")]).axes[0]
        assert len(shaded.patches) == len(plain.patches) + 1
        assert "kill inventory" in [t.get_text() for t in shaded.texts]


def test_throughput_against_latency_needs_two_rates(run_dir: Path, reps_dir: Path) -> None:
    one = load_runs([run_dir])
    assert plots.throughput_vs_latency(plots.rate_points(one), ["rest", "grpc"]) is None
    points = plots.rate_points(load_runs([run_dir, reps_dir]))
    assert {(p.target, p.intended) for p in points} == {
        ("rest", 100.0), ("grpc", 100.0), ("rest", 150.0), ("grpc", 150.0)}
    fig = plots.throughput_vs_latency(points, ["rest", "grpc"])
    assert fig is not None and len(fig.axes[0].lines) == 2


# ---- findings and claims ------------------------------------------------------------------

def test_findings_quote_the_tables(run_dir: Path) -> None:
    run = load_run(run_dir)
    df = figures(run)
    sentences = findings(run, df)
    # The shared run is real: on a busy machine its generator may fall behind. The first
    # sentence must say what run.json recorded, whichever it was.
    behind, lagging = recorded_flags(run_dir)
    said = [x for x in sentences if x.startswith("On ") and "the generator kept the rate" in x]
    assert len(said) == (1 if lagging else 0), sentences  # lagging: latency gaps not counted
    if lagging:
        assert said[0].startswith(f"On {', '.join(LABELS[t] for t in lagging)} the generator "
                                  "kept the rate, but its schedule lag could account for a fifth or more")
    if not behind:
        assert sentences[0].startswith("The generator kept to the offered 100 requests/s")
    else:
        assert sentences[0] == (
            "Throughput is not compared: the generator fell behind on "
            f"{', '.join(LABELS[t] for t in behind)}, so throughput there measures the "
            "generator, not the target."), sentences
        assert not any(s.startswith("The generator kept") for s in sentences)
    shown = {fmt(v, m) for v, m in zip(df["value"], df["metric"], strict=True)}
    # a difference beyond noise is quoted "(a vs b ms)"; one within it "median a vs b ms"
    quoted = r"(?:\(|median )([\d.,]+) vs ([\d.,]+) (?:ms|µs)"
    pairs = [m for s in sentences for m in re.findall(quoted, s)]
    assert pairs, sentences
    for a, b in pairs:
        assert {a, b} <= shown | {f"{v:,.0f}" for v in df["value"].dropna()}
    # open loop at a rate every target kept: throughput is never compared
    assert not any("throughput" in s and "×" in s for s in sentences)


def test_claims_judge_only_what_the_run_can_decide(run_dir: Path) -> None:
    run = load_run(run_dir)
    claims = {c.key: c for c in check_claims(run, figures(run))}
    assert set(claims) == {"grpc-fast", "rest-blocking", "queue-spikes", "queue-isolation",
                           "sync-cascade", "timeout-fast-errors", "breaker-recovers",
                           "retries-amplify", "es-audit", "es-temporal", "es-eventual"}
    # no eventsourced target in this run: its claims say what they would need
    assert all(claims[k].verdict == NOT_MEASURED and "event-sourced target" in claims[k].reason
               for k in ("es-audit", "es-temporal", "es-eventual"))
    # one repetition: the noise is not measured, so an observation at most, never a verdict
    grpc = claims["grpc-fast"]
    assert grpc.verdict == UNDECIDED
    assert any("p50" in e and "ms" in e for e in grpc.evidence)
    assert any("too few requests" in e for e in grpc.evidence)  # p99, 300 req
    behind, lagging = recorded_flags(run_dir)  # what the run recorded (see report_runs)
    if not behind:
        assert "throughput not compared: open loop: every target was offered the same " \
               "rate and kept up" in grpc.evidence[-1]
    else:
        assert grpc.evidence[-1].startswith("throughput not compared: the generator fell "
                                            f"behind on {', '.join(LABELS[t] for t in behind)}")
    if not behind + lagging:
        assert grpc.reason.startswith("one repetition")
        assert grpc.observation.startswith("observed in this run")
    else:  # flagged: latency may be the generator's, counted nowhere
        flagged = " and ".join(
            ([f"the generator fell behind on {', '.join(LABELS[t] for t in behind)}"]
             if behind else []) +
            ([f"the generator's schedule lag could account for a fifth or more of the latency p99 on "
              f"{', '.join(LABELS[t] for t in lagging)}"] if lagging else []))
        assert grpc.reason.startswith(f"{flagged}, which inflates"), grpc.reason
        assert grpc.observation == ""
        assert all(e.endswith(f"not counted: {flagged}, which inflates "
                              f"{'its' if len(behind + lagging) == 1 else 'their'} latency")
                   for e in grpc.evidence if ", p50:" in e), grpc.evidence
    for key in ("rest-blocking", "queue-spikes"):  # no queue target in this run
        assert claims[key].verdict == NOT_MEASURED
    for key in ("queue-isolation", "sync-cascade"):  # the fixture run injects no fault
        assert claims[key].verdict == NOT_MEASURED
        assert claims[key].reason == "no fault was injected in this run"
    assert claims["timeout-fast-errors"].reason == "no pause or delay fault in this run"
    for key in ("breaker-recovers", "retries-amplify"):  # and no policy variants
        assert claims[key].verdict == NOT_MEASURED
        assert claims[key].reason == "the run measured no policy variants ([[variants]])"


def test_grpc_claim_within_noise_is_not_decided(tmp_path: Path) -> None:
    # Pure logic: two identical targets measured twice; their ranges overlap.
    spec = RunSpec(targets=[TargetSpec("rest", 3.0), TargetSpec("grpc", 3.0)], repetitions=2,
                   seed=11)
    run = load_run(write_run(tmp_path, spec))
    (claim,) = [c for c in check_claims(run, figures(run)) if c.key == "grpc-fast"]
    assert claim.verdict == UNDECIDED, claim.evidence


def test_clear_differences_decide_the_grpc_claim(tmp_path: Path) -> None:
    spec = RunSpec(targets=[TargetSpec("rest", 6.0), TargetSpec("grpc", 2.0)], repetitions=3,
                   seconds=10)
    run = load_run(write_run(tmp_path, spec))
    df = figures(run)
    (claim,) = [c for c in check_claims(run, df) if c.key == "grpc-fast"]
    assert claim.verdict == SUPPORTED
    s = findings(run, df)
    assert any(x.startswith("gRPC answered order lookups with a ") for x in s), s


def test_saturated_generator_makes_throughput_undecidable(tmp_path: Path) -> None:
    spec = RunSpec(targets=[TargetSpec("rest", 4.0), TargetSpec("grpc", 2.0)],
                   saturated={"rest"}, seed=3)
    run = load_run(write_run(tmp_path, spec))
    ok, why = throughput_comparable(run, ["rest", "grpc"])
    assert not ok and "fell behind on REST" in why
    sentences = findings(run, figures(run))
    assert sentences[0].startswith("Throughput is not compared: the generator fell behind")
    assert not any("throughput at" in s or "'s throughput" in s for s in sentences)


# ---- the HTML report ----------------------------------------------------------------------

def test_report_is_self_contained(run_dir: Path, tmp_path: Path) -> None:
    out = write_report(run_dir, tmp_path / "r.html")
    html = out.read_text()
    assert re.findall(r'(?:src|href)="(?!data:)[^"#]', html) == []  # nothing fetched
    assert "<script" not in html and "@import" not in html and "url(http" not in html
    assert html.count("<table class=\"figures\"") == 4
    assert html.count('<img src="data:image/svg+xml;base64,') == 6  # 3 spectra + 3 plots
    assert "quick" in html and "cores" in html
    assert "at least three repetitions" in " ".join(html.split())  # the claims' rule
    assert (tmp_path / "r" / "tables" / "get.md").exists()
    assert len(list((tmp_path / "r" / "plots").glob("*.svg"))) == 6


def test_report_command_prints_the_path(run_dir: Path, tmp_path: Path) -> None:
    copy = copy_run(run_dir, tmp_path)
    p = commbench("report", str(copy))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str(copy / "report.html")
    assert (copy / "report" / "tables" / "all.csv").exists()
    assert (copy / "report" / "plots" / "spectrum-get.svg").exists()


def test_write_report_default_path_is_the_run_folder(run_dir: Path, tmp_path: Path) -> None:
    copy = copy_run(run_dir, tmp_path)
    assert write_report(copy) == copy / "report.html"
    assert write_report([copy]) == copy / "report.html"


def test_runs_at_two_rates_are_reported_together(run_dir: Path, reps_dir: Path,
                                                 tmp_path: Path) -> None:
    out = write_report([run_dir, reps_dir], tmp_path / "both.html")
    html = out.read_text()
    assert "Across offered rates" in html
    assert (tmp_path / "both" / "plots" / "throughput-latency.svg").exists()
    for d in (run_dir, reps_dir):
        assert (tmp_path / "both" / d.name / "tables" / "all.csv").exists()


# ---- bad input ----------------------------------------------------------------------------

def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty folder, not a commbench run"):
        load_run(tmp_path / "empty")
    p = commbench("report", str(tmp_path / "empty"))
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "empty folder" in p.stderr


def test_results_folder_instead_of_a_run(run_dir: Path) -> None:
    with pytest.raises(UserError, match=rf"holds 1 run folder\(s\).*{run_dir.name}"):
        load_run(run_dir.parent)


def test_missing_folder_and_damaged_run_json(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such folder"):
        load_run(tmp_path / "nope")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_run(tmp_path / "bad")


def test_other_format_version(run_dir: Path, tmp_path: Path) -> None:
    copy = copy_run(run_dir, tmp_path)
    ctx = json.loads((copy / "run.json").read_text())
    ctx["format"] = "commbench-run/2"
    (copy / "run.json").write_text(json.dumps(ctx))
    with pytest.raises(UserError) as err:
        load_run(copy)
    assert "'commbench-run/2'" in str(err.value) and f"'{FORMAT}'" in str(err.value)
    p = commbench("report", str(copy))
    assert p.returncode == 2 and "commbench-run/2" in p.stderr


def test_partial_run_reports_what_exists(run_dir: Path, tmp_path: Path) -> None:
    copy = partial_copy(run_dir, tmp_path)
    run = load_run(copy)
    assert run.partial
    assert any(w.startswith("partial run") for w in run.warnings)
    assert any("summary.csv is missing" in w for w in run.warnings)
    df = figures(run)
    assert set(df["target"]) == {"rest"}
    # throughput and latency come from the histograms alone
    full = figures(load_run(run_dir))
    for key in ("throughput", "p50", "p99"):
        assert figure(df, "rest", "get", key).value == pytest.approx(
            figure(full, "rest", "get", key).value, rel=1e-3)
    html = write_report(copy).read_text()
    assert "partial run" in html and "Read with care" in html


def test_runs_of_different_scenarios_are_not_compared(run_dir: Path, tmp_path: Path) -> None:
    other = write_run(tmp_path, RunSpec(scenario="order-lookup"))
    runs = load_runs([run_dir, other])
    out = write_report([run_dir, other], tmp_path / "two.html")
    html = out.read_text()
    assert "measured different scenarios" in html
    assert f"{runs[0].run_id} (quick)" in html and f"{runs[1].run_id} (order-lookup)" in html
    assert "Across offered rates" not in html
    assert html.count('class="run"') == 2


def test_same_folder_twice_is_refused(run_dir: Path) -> None:
    with pytest.raises(UserError, match="given twice"):
        load_runs([run_dir, run_dir])


def test_failed_target_is_a_warning(tmp_path: Path) -> None:
    spec = RunSpec(targets=[TargetSpec("rest", 4.0), TargetSpec("grpc", 2.0, status="failed")])
    run = load_run(write_run(tmp_path, spec))
    assert "target grpc (repetition 1) failed: exited with code 1" in run.warnings
    assert set(figures(run)["target"]) == {"rest"}
    assert not math.isnan(figure(figures(run), "rest", "get", "p50").value)


def test_latency_of_a_saturated_target_does_not_decide_the_claim(tmp_path: Path) -> None:
    # REST is slower here but its generator fell behind: its latency may be the generator's.
    spec = RunSpec(targets=[TargetSpec("rest", 6.0), TargetSpec("grpc", 2.0)],
                   saturated={"rest"}, seconds=10, seed=5)
    run = load_run(write_run(tmp_path, spec))
    df = figures(run)
    (claim,) = [c for c in check_claims(run, df) if c.key == "grpc-fast"]
    assert claim.verdict == UNDECIDED
    assert any("not counted: the generator fell behind on REST" in e for e in claim.evidence)
    assert any("so part of that gap may be the generator's" in s for s in findings(run, df))


# ---- QA 4: claims need measured noise, skip saturated targets, never decide within noise ----

def _claim(run_dir: Path, key: str):
    run = load_run(run_dir)
    (claim,) = [c for c in check_claims(run, figures(run)) if c.key == key]
    return claim


def test_one_repetition_gives_an_observation_never_a_verdict(tmp_path: Path) -> None:
    # gRPC three times faster, one repetition: clear, but the noise was never measured.
    spec = RunSpec(targets=[TargetSpec("rest", 6.0), TargetSpec("grpc", 2.0)], seconds=10)
    claim = _claim(write_run(tmp_path, spec), "grpc-fast")
    assert claim.verdict == UNDECIDED
    assert "noise is not measured" in claim.reason
    assert claim.observation == ("observed in this run, not a verdict: gRPC lower on 3 and REST "
                                 "lower on 0 of 3 figures beyond the ±10 % default band")
    assert all("noise not measured" in e for e in claim.evidence if ", p50:" in e)


def _queue_run(tmp_path: Path, *, saturated: set[str] = frozenset(), reps: int = 3,
               accepted_ms: float = 1.0, peak_slowdown: float = 1.0,
               stages: list[dict[str, float]] | None = None, seed: int = 7) -> Path:
    return write_run(tmp_path, RunSpec(
        scenario="mixed", targets=[TargetSpec("rest", 8.0),
                                   TargetSpec("queue", 10.0, accepted_ms=accepted_ms,
                                              peak_slowdown=peak_slowdown)],
        operations={"get": 0.2, "create": 0.8}, repetitions=reps, seconds=10, seed=seed,
        saturated=set(saturated), stages=stages))


def test_a_lagging_generator_keeps_throughput_but_not_latency(tmp_path: Path) -> None:
    """Flagged for lag alone (every request went out): throughput is the offered rate like
    any target's, never "fell behind"; its latency gaps are said and not counted."""
    spec = RunSpec(targets=[TargetSpec("rest", 4.0), TargetSpec("grpc", 2.0)],
                   lagging={"rest"}, seed=3)
    run = load_run(write_run(tmp_path, spec))
    ok, why = throughput_comparable(run, ["rest", "grpc"])
    assert not ok and why.startswith("open loop: every target was offered the same rate")
    sentences = findings(run, figures(run))
    assert sentences[0].startswith("The generator kept to the offered 200 requests/s")
    assert sentences[1] == ("On REST the generator kept the rate, but its schedule lag could "
                            "account for a fifth or more of the latency p99, so latency gaps "
                            "involving it may be partly the generator's and are not counted.")
    assert not any("fell behind" in x for x in sentences), sentences
    gap = [x for x in sentences if x.startswith("gRPC answered order lookups with a ")]
    assert gap and all(x.endswith("but the generator's schedule lag could account for a fifth "
                                  "or more of the "
                                  "latency p99 on REST, so part of that gap may be the "
                                  "generator's: not counted.") for x in gap), sentences
    grpc = {c.key: c for c in check_claims(run, figures(run))}["grpc-fast"]
    assert grpc.reason.startswith("the generator's schedule lag could account for a fifth or more of the "
                                  "latency p99 on REST, which inflates its latency")
    # a run written before `schedule` existed: its flag counts as behind, as it did then
    ctx = json.loads((run.path / "run.json").read_text())
    for t in ctx["targets"]:
        del t["schedule"]
    (run.path / "run.json").write_text(json.dumps(ctx))
    ok, why = throughput_comparable(load_run(run.path), ["rest", "grpc"])
    assert not ok and "fell behind on REST" in why


def test_saturated_queue_does_not_decide_rest_blocking(tmp_path: Path) -> None:
    # QA 4: the verdict came from the queue's saturated accept p50 while the findings on
    # the same page said that gap was not decided.
    claim = _claim(_queue_run(tmp_path, saturated={"queue"}), "rest-blocking")
    assert claim.verdict == UNDECIDED
    assert "generator fell behind on the queue" in claim.reason
    assert "not counted" in claim.evidence[0]
    measured = _claim(_queue_run(tmp_path / "ok"), "rest-blocking")
    assert measured.verdict == SUPPORTED, measured.evidence  # the same run, kept up


def test_failed_target_is_left_out_of_claims_and_findings(tmp_path: Path) -> None:
    spec = RunSpec(targets=[TargetSpec("rest", 6.0), TargetSpec("grpc", 2.0)], repetitions=2,
                   seconds=10)
    path = write_run(tmp_path, spec)
    ctx = json.loads((path / "run.json").read_text())
    ctx["targets"][1]["status"] = "failed"  # grpc r1 failed mid-run, data kept
    ctx["targets"][1]["error"] = "lost its broker"
    (path / "run.json").write_text(json.dumps(ctx))
    run = load_run(path)
    df = figures(run)
    assert "grpc" in set(df["target"])  # still in the tables
    (claim,) = [c for c in check_claims(run, df) if c.key == "grpc-fast"]
    assert claim.verdict == NOT_MEASURED
    sentences = findings(run, df)
    assert "gRPC failed during the run: its figures are in the tables but are not compared." \
        in sentences
    assert not any("than REST" in s or "than gRPC" in s for s in sentences)


STAGES = [{"rate": 100.0, "duration_s": 5.0}, {"rate": 300.0, "duration_s": 5.0}]


def test_spike_within_noise_is_not_decided(tmp_path: Path) -> None:
    # QA 4: queue_buffers_spikes said SUPPORTED when the accept wait changed within noise.
    # Nothing slowed at the peak: nothing was buffered, so the run cannot show buffering.
    claim = _claim(_queue_run(tmp_path, stages=STAGES, reps=3, accepted_ms=5.0), "queue-spikes")
    assert claim.verdict == UNDECIDED, claim.evidence
    assert "nothing had to be buffered" in claim.reason
    assert any("within the measured noise" in e for e in claim.evidence)


def test_spike_absorbed_by_the_queue_is_supported(tmp_path: Path) -> None:
    # The consumer fell behind at the peak (completed creations 4× slower), the producers'
    # accept wait did not move: that is buffering, decided on three repetitions.
    claim = _claim(_queue_run(tmp_path, stages=STAGES, reps=3, accepted_ms=5.0,
                              peak_slowdown=4.0), "queue-spikes")
    assert claim.verdict == SUPPORTED, claim.evidence
    assert any("completed" in e and "beyond the measured noise" in e for e in claim.evidence)


def test_mixed_shape_spike_claim_says_precisely_why_not(tmp_path: Path) -> None:
    # The shipped `mixed` scenario: one repetition, stages 150/300/450 req/s of 10 s, 20 %
    # creations. Before: "too few creations in the stages to judge their p99" whatever ran.
    # Now the tail is judged at p90 (300 creations in the base stage) and the reason left is
    # the one that can be fixed: a single repetition measures no noise.
    stages = [{"rate": r, "duration_s": 10.0} for r in (150.0, 300.0, 450.0)]
    path = write_run(tmp_path, RunSpec(
        scenario="mixed", operations={"get": 0.7, "list": 0.1, "create": 0.2}, seconds=30,
        stages=stages, targets=[TargetSpec("rest", 2.0),
                                TargetSpec("queue", 3.0, accepted_ms=1.0)]))
    claim = _claim(path, "queue-spikes")
    assert claim.verdict == UNDECIDED
    assert claim.reason.startswith("one repetition")
    assert any(e.startswith("judged at p90") for e in claim.evidence)
    assert claim.observation.startswith("observed in this run, not a verdict: the accept wait")


def test_claim_gap_is_stated_against_the_larger_value(tmp_path: Path) -> None:
    spec = RunSpec(targets=[TargetSpec("rest", 6.0), TargetSpec("grpc", 2.0)], repetitions=2,
                   seconds=10)
    run = load_run(write_run(tmp_path, spec))
    df = figures(run)
    (claim,) = [c for c in check_claims(run, df) if c.key == "grpc-fast"]
    (line,) = [e for e in claim.evidence if e.startswith("order lookups, p50")]
    # The two values as the line shows them, and the gap it states: measured against the
    # larger (REST's), about 66 %; against the smaller it would read about 195 %.
    m = re.search(r"gRPC ([\d.]+) \[[^]]*\] ms vs REST ([\d.]+) \[[^]]*\] ms "
                  r"\(gRPC (\d+) % lower\)", line)
    assert m, line
    g, r, gap = float(m[1]), float(m[2]), int(m[3])
    assert abs(gap - (r - g) / r * 100) <= 1  # within the shown values' rounding
    assert 60 <= gap <= 70  # the synthetic p50s, about 2 and 6 ms


# ---- findings wording --------------------------------------------------------------------

@pytest.mark.parametrize(("a", "b", "words"), [
    (1.24, 3342.0, "a 2,700× lower median latency"),  # was "a 100 % lower median latency"
    (1.0, 11.0, "an 11× lower median latency"),
    (1.0, 2.5, "a 2.5× lower median latency"),
    (1.89, 2.08, "a 9 % lower median latency"),
    (3.0, 1.0, "a 3.0× higher median latency"),
    (1.18, 1.0, "an 18 % higher median latency"),
])
def test_large_differences_are_ratios(a: float, b: float, words: str) -> None:
    from reports.findings import change_words

    assert change_words(a, b, "median latency") == words


# ---- run context ---------------------------------------------------------------------------

def test_run_context_reads_like_prose(tmp_path: Path) -> None:
    from reports.html import _context

    path = write_run(tmp_path, RunSpec())
    ctx = json.loads((path / "run.json").read_text())
    ctx["environment"]["pinning"] = {"target_cpus": None, "load_cpus": None}
    ctx["arguments"]["amqp_url"] = "amqp://bob:s3cret@10.0.0.5:5672/"
    ctx["broker"] = {"url": "amqp://guest:guest@127.0.0.1:5672/", "shared": True,
                     "private": False}
    (path / "run.json").write_text(json.dumps(ctx))
    rows = dict(_context(load_run(path)))
    assert "timeout 5 s" in rows["load"] and "timeout s" not in rows["load"]
    assert rows["pinning"] == "target CPUs: not pinned; load generator CPUs: not pinned"
    assert "None" not in " ".join(rows.values())
    assert rows["duration"] == "5 s measured after 1 s warm-up, 1 repetition"
    assert rows["broker"].startswith("shared at amqp://guest:guest@127.0.0.1:5672/")
    assert "s3cret" not in rows["arguments"] and "bob:***@" in rows["arguments"]
    ctx["broker"] = {"private": True}
    (path / "run.json").write_text(json.dumps(ctx))
    assert dict(_context(load_run(path)))["broker"].startswith("private")
    del ctx["broker"]
    (path / "run.json").write_text(json.dumps(ctx))
    assert "broker" not in dict(_context(load_run(path)))  # older runs: no row, no error


# ---- plots: measured window, offered rate, CPU ---------------------------------------------

def test_time_plots_stop_at_the_measured_window(tmp_path: Path) -> None:
    # Two drain seconds after a 5 s window: late completions, not measured time.
    run = load_run(write_run(tmp_path, RunSpec(seconds=5, drain=2)))
    assert run.timeline["second"].max() == 6
    for fn in (plots.latency_over_time, plots.throughput_over_time):
        ax = fn(run).axes[0]
        xs = [x for line in ax.lines for x in line.get_xdata()]
        assert max(xs) <= 5.0, fn.__name__
        assert ax.get_xlim()[1] == 5.0


def test_offered_rate_line_is_visible(run_dir: Path) -> None:
    ax = plots.throughput_over_time(load_run(run_dir)).axes[0]
    (offered,) = [ln for ln in ax.lines if ln.get_label() == "offered rate"]
    others = [ln for ln in ax.lines if ln is not offered]
    assert offered.get_zorder() > max(ln.get_zorder() for ln in others)  # drawn on top
    assert offered.get_color() == "black" and offered.get_linewidth() >= 1.2
    assert set(offered.get_ydata()) == {100.0}
    assert "offered rate" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_cpu_plot_and_tables_show_the_load_generator(tmp_path: Path, run_dir: Path) -> None:
    spec = RunSpec(targets=[TargetSpec("rest", 4.0, cpu_us=400, client_cpu_us=250),
                            TargetSpec("grpc", 2.0, cpu_us=300, client_cpu_us=150)])
    run = load_run(write_run(tmp_path, spec))
    assert not any("lacks columns" in w for w in run.warnings)
    df = figures(run)
    assert figure(df, "rest", "get", "client_cpu").value == pytest.approx(250 * 1.02)
    (get,) = [t for t in tables(df) if t.operation == "get"]
    labels = [c[0] for c in get.columns]
    assert labels.index("load generator CPU/request") == labels.index("target CPU/request") + 1
    ax = plots.cpu_per_request(df, run.targets).axes[0]
    assert "per request" in ax.get_xlabel() and "failures included" in ax.get_xlabel()
    assert "completed request," not in ax.get_xlabel().replace("every completed request", "")
    assert len(ax.patches) == 4  # two targets × (target, load generator)
    texts = [t.get_text() for t in ax.texts]
    assert any("load generator: 255 µs" in t for t in texts), texts
    # an older run without the column: no warning, no column, a single bar per target
    copy = without_manifest(copy_run(run_dir, tmp_path / "old"))
    s = pd.read_csv(copy / "summary.csv")
    s.drop(columns=[c for c in s.columns if c.startswith("client_cpu")]).to_csv(
        copy / "summary.csv", index=False)
    old = load_run(copy)
    assert not any("client_cpu" in w for w in old.warnings)
    old_df = figures(old)
    assert all("load generator" not in c[0] for t in tables(old_df) for c in t.columns)
    assert len(plots.cpu_per_request(old_df, old.targets).axes[0].patches) == 2


# ---- QA 12: report --out -----------------------------------------------------------------

def test_out_refuses_to_overwrite_a_file_that_is_not_a_report(run_dir: Path,
                                                              tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("precious\n")
    p = commbench("report", str(run_dir), "--out", str(notes))
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "not a commbench report" in p.stderr
    assert notes.read_text() == "precious\n"
    page = tmp_path / "page.html"
    page.write_text("<html>someone else's page</html>")
    with pytest.raises(UserError, match="not a commbench report"):
        write_report(run_dir, page)
    assert page.read_text() == "<html>someone else's page</html>"
    # a report is replaced by a new one
    out = write_report(run_dir, tmp_path / "r.html")
    assert write_report(run_dir, out) == out


def test_out_without_html_is_a_folder(run_dir: Path, tmp_path: Path) -> None:
    p = commbench("report", str(run_dir), "--out", str(tmp_path / "myreport"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str(tmp_path / "myreport" / "report.html")
    assert (tmp_path / "myreport" / "report.html").read_text().startswith(
        "<!DOCTYPE html>\n<!-- commbench-report")
    assert (tmp_path / "myreport" / "report" / "tables" / "all.csv").exists()
    with pytest.raises(UserError, match="no such folder"):
        write_report(run_dir, tmp_path / "missing" / "deeper")
    help_text = commbench("report", "--help").stdout
    assert "folder" in help_text and "commbench report" in help_text


def test_measured_noise_can_refute(tmp_path: Path) -> None:
    # Three repetitions, REST's completed creations 10× faster than the queue's accept.
    path = write_run(tmp_path, RunSpec(
        scenario="mixed", targets=[TargetSpec("rest", 0.5),
                                   TargetSpec("queue", 10.0, accepted_ms=5.0)],
        operations={"get": 0.2, "create": 0.8}, repetitions=3, seconds=5))
    claim = _claim(path, "rest-blocking")
    assert claim.verdict == REFUTED, claim.evidence
    assert "beyond the measured noise" in claim.evidence[0]


def test_operation_table_lists_only_targets_that_ran_it(tmp_path: Path) -> None:
    # Before: REST and gRPC rows in the "accepted by the broker" table, all dashes but CPU.
    run = load_run(_queue_run(tmp_path, reps=1))
    df = figures(run)
    assert set(df.loc[df["operation"] == "create_accepted", "target"]) == {"queue"}
    assert set(df.loc[df["operation"] == "create", "target"]) == {"rest", "queue"}


# ---- QA 1: a multi-run report never replaces a run's own report -----------------------------

def test_report_of_several_runs_gets_its_own_default_path(run_dir: Path, reps_dir: Path,
                                                         tmp_path: Path) -> None:
    # Before: `commbench report A B` wrote A/report.html, replacing A's own report.
    a, b = copy_run(run_dir, tmp_path / "a"), copy_run(reps_dir, tmp_path / "b")
    own = write_report(a)
    before = own.read_text()
    p = commbench("report", str(a), str(b))
    assert p.returncode == 0, p.stderr
    combined = a / f"report-with-{b.name}.html"
    assert p.stdout.strip() == str(combined)
    assert combined.read_text().startswith("<!DOCTYPE html>\n<!-- commbench-report")
    assert own.read_text() == before  # A's own report untouched
    assert (a / f"report-with-{b.name}" / "plots" / "throughput-latency.svg").exists()
    assert write_report([a]) == own  # one run: still <run>/report.html
    help_text = " ".join(commbench("report", "--help").stdout.split())
    assert "report-with-" in help_text and "never replaced" in help_text


# ---- QA 2: claims need three repetitions, a 10 % effect and agreeing figures ----------------

def test_two_repetitions_give_an_observation_not_a_verdict(tmp_path: Path) -> None:
    # Before: supported. Two repetitions' ranges separate by chance one time in three.
    spec = RunSpec(targets=[TargetSpec("rest", 6.0), TargetSpec("grpc", 2.0)], repetitions=2,
                   seconds=10)
    claim = _claim(write_run(tmp_path, spec), "grpc-fast")
    assert claim.verdict == UNDECIDED, claim.evidence
    assert claim.reason.startswith("two repetitions:") and "at least 3" in claim.reason
    assert claim.observation == ("observed in this run, not a verdict: gRPC lower on 3 and REST "
                                 "lower on 0 of 3 figures beyond the two repetitions' ranges")
    assert all("too few repetitions for a verdict" in e for e in claim.evidence if ", p50:" in e)
    queue = _claim(_queue_run(tmp_path / "q", reps=2), "rest-blocking")
    assert queue.verdict == UNDECIDED and queue.reason.startswith("two repetitions:")


def _grpc_claim_on(tmp_path: Path, p50: dict[tuple[str, str], tuple[float, float, float]]):
    """The gRPC claim on three repetitions of two identical targets (every figure equal),
    with the given p50 figures (value, lo, hi) set per (target, operation): pure logic."""
    spec = RunSpec(targets=[TargetSpec("rest", 3.0), TargetSpec("grpc", 3.0)], repetitions=3,
                   operations={"get": 0.5, "list": 0.2, "create": 0.3}, seed=11)
    run = load_run(write_run(tmp_path, spec))
    df = figures(run)
    for (_target, op, metric), row in df[df["target"] == "rest"].set_index(
            ["target", "operation", "metric"]).iterrows():
        sel = (df["target"] == "grpc") & (df["operation"] == op) & (df["metric"] == metric)
        df.loc[sel, ["value", "lo", "hi"]] = [row["value"], row["lo"], row["hi"]]
    for (target, op), (v, lo, hi) in p50.items():
        sel = (df["target"] == target) & (df["operation"] == op) & (df["metric"] == "p50")
        df.loc[sel, ["value", "lo", "hi"]] = [v, lo, hi]
    (claim,) = [c for c in check_claims(run, df) if c.key == "grpc-fast"]
    return claim


def test_claim_needs_a_ten_percent_gap(tmp_path: Path) -> None:
    # QA: creation p50 0.975 vs 1.06 ms (8 %, ranges apart) called "supported" alone.
    claim = _grpc_claim_on(tmp_path, {("grpc", "create"): (0.975, 0.97, 0.98),
                                      ("rest", "create"): (1.06, 1.05, 1.07)})
    assert claim.verdict == UNDECIDED, claim.evidence
    (line,) = [e for e in claim.evidence if e.startswith("order creations, p50")]
    assert "under 10 %" in line


def test_claim_over_several_figures_needs_them_to_agree(tmp_path: Path) -> None:
    one_way = _grpc_claim_on(tmp_path / "a", {("grpc", "create"): (0.8, 0.79, 0.81),
                                              ("rest", "create"): (1.06, 1.05, 1.07)})
    assert one_way.verdict == SUPPORTED, one_way.evidence
    assert "no figure pointed the other way" in one_way.reason
    assert re.search(r"\(1 of \d+ figures decided, \d+ within the noise\)", one_way.reason)
    both = _grpc_claim_on(tmp_path / "b", {("grpc", "create"): (0.8, 0.79, 0.81),
                                           ("rest", "create"): (1.06, 1.05, 1.07),
                                           ("grpc", "get"): (1.3, 1.29, 1.31),
                                           ("rest", "get"): (1.0, 0.99, 1.01)})
    assert both.verdict == UNDECIDED
    assert both.reason.startswith("the decided figures point both ways: gRPC faster on 1, "
                                  "REST faster on 1")


def test_findings_never_say_decided_on_one_repetition(tmp_path: Path) -> None:
    # Before: "a difference within noise (decided only when …)" on a single repetition.
    alike = load_run(write_run(tmp_path / "a", RunSpec(
        targets=[TargetSpec("rest", 3.0), TargetSpec("grpc", 3.0)], seed=11)))
    sentences = findings(alike, figures(alike))
    assert any("alike" in s and "counted only when" in s for s in sentences), sentences
    behind = load_run(write_run(tmp_path / "b", RunSpec(
        targets=[TargetSpec("rest", 6.0), TargetSpec("grpc", 2.0)], saturated={"rest"},
        seconds=10, seed=5)))
    for s in sentences + findings(behind, figures(behind)):
        assert "decided" not in s, s


# ---- QA 4: variants of one transport share a server: compare the client's CPU -------------

def test_variants_of_one_transport_compare_the_load_generator_cpu(tmp_path: Path) -> None:
    # Before: "REST used 25 % less CPU per request than REST (httpx)", a server-noise gap.
    spec = RunSpec(targets=[TargetSpec("rest", 4.0, cpu_us=300, client_cpu_us=150),
                            TargetSpec("rest-httpx", 4.0, cpu_us=400, client_cpu_us=250),
                            TargetSpec("grpc", 2.0, cpu_us=800, client_cpu_us=150)])
    run = load_run(write_run(tmp_path, spec))
    sentences = findings(run, figures(run))
    assert not any("per request than REST (httpx)" in s for s in sentences), sentences
    (client,) = [s for s in sentences if s.startswith("The load generator used")]
    assert client.startswith("The load generator used 40 % less CPU per request with REST "
                             "than with REST (httpx) (")
    assert "same server" in client
    # between transports the target's CPU is still compared
    assert any(s.startswith("REST used 2.7× less CPU per request than gRPC") for s in sentences)
