"""Damaged result files are refused or rebuilt, never misread; failed and interrupted targets
never gate `compare --fail-on`. The issue's cases 1, 5 and 7, on a real short run
(tests/report_runs.py) copied and damaged the way a cut copy or a bad disk would."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from reports.loader import Run, load_run
from reports.tables import figure, figures
from tests.report_runs import commbench, copy_run, real_run, without_manifest
from tests.resultfolder import RunSpec, TargetSpec, write_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return real_run(tmp_path_factory.getbasetemp() / "report-runs", "one-rep")


def cut_mid_row(path: Path, marker: str, keep: int = 12) -> None:
    """Cut a CSV inside the row starting with `marker`, as an interrupted copy does."""
    text = path.read_text()
    path.write_text(text[:text.index(marker) + keep])


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_a_summary_cut_mid_row_is_rebuilt_from_the_histograms(run_dir: Path,
                                                               tmp_path: Path) -> None:
    """Case 1: the report says so and shows the run's own throughput; compare of a copy
    with identical data finds no regression (it found -16.7 % and exited 1)."""
    a = copy_run(run_dir, tmp_path / "a")
    b = copy_run(run_dir, tmp_path / "b")
    cut_mid_row(b / "summary.csv", "rest,rest,aiohttp,1,all,")
    whole, cut = load_run(a), load_run(b)
    rebuilt = [w for w in cut.warnings if w.startswith("summary.csv is damaged")]
    assert rebuilt and "rebuilt from the histograms" in rebuilt[0] \
        and "CPU and memory" in rebuilt[0]
    fa, fb = figures(whole), figures(cut)
    for target in ("rest", "grpc"):
        for op in ("get", "all"):
            assert figure(fb, target, op, "throughput").value == pytest.approx(
                figure(fa, target, op, "throughput").value, abs=0.001)
            assert figure(fb, target, op, "error_rate").value == pytest.approx(
                figure(fa, target, op, "error_rate").value, abs=1e-6)
        assert pd.isna(figure(fb, target, "all", "cpu").value)  # not in the histograms: blank
    # the intended rate the compare's offered-load rule reads is rebuilt as the runner summed it
    def intended(run: Run) -> dict[str, float]:
        s = run.summary
        return s[s["operation"] == "all"].set_index("target")["intended_rps"].to_dict()

    assert intended(cut) == pytest.approx(intended(whole), abs=0.001)

    gone = copy_run(run_dir, tmp_path / "gone")  # missing altogether: the same rebuild
    (gone / "summary.csv").unlink()
    missing = load_run(gone)
    assert any(w.startswith("summary.csv is damaged (missing; run.json lists it)")
               for w in missing.warnings)
    assert figure(figures(missing), "rest", "all", "throughput").value == pytest.approx(
        figure(fa, "rest", "all", "throughput").value, abs=0.001)

    report = commbench("report", str(b), "--out", str(tmp_path / "b.html"))
    assert report.returncode == 0, report.stderr
    assert "summary.csv is damaged" in (tmp_path / "b.html").read_text()

    p = commbench("compare", str(a), str(b), "--fail-on", "throughput:-5%")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "FAIL" not in p.stdout and "B: summary.csv is damaged" in p.stdout


def test_a_summary_without_manifest_is_checked_by_its_structure(run_dir: Path,
                                                                tmp_path: Path) -> None:
    """A run written before run.json listed its files: a row with the wrong number of
    fields, or a cut last row, is damage too."""
    old = without_manifest(copy_run(run_dir, tmp_path))
    cut_mid_row(old / "summary.csv", "grpc,grpc,grpcio,1,all,")
    run = load_run(old)
    assert any("summary.csv is damaged (its last row is cut off)" in w for w in run.warnings)
    assert not pd.isna(figure(figures(run), "grpc", "all", "throughput").value)


def test_a_damaged_timeline_is_refused_naming_the_file(run_dir: Path, tmp_path: Path) -> None:
    """Nothing rebuilds the per-second resources: one line, exit 2, for report and compare."""
    copy = copy_run(run_dir, tmp_path)
    cut_mid_row(copy / "timeline.csv", "grpc,1,0,all,")
    p = commbench("report", str(copy), "--out", str(tmp_path / "r.html"))
    assert p.returncode == 2
    line = one_line(p.stderr)
    assert f"{copy / 'timeline.csv'}: damaged" in line and "bytes where the run wrote" in line
    assert not (tmp_path / "r.html").exists()
    p = commbench("compare", str(run_dir), str(copy))
    assert p.returncode == 2 and "timeline.csv: damaged" in one_line(p.stderr)


@pytest.mark.parametrize("manifest", [True, False], ids=["listed", "older-run"])
def test_a_corrupted_hlog_is_refused_not_plotted_around(run_dir: Path, tmp_path: Path,
                                                        manifest: bool) -> None:
    """Case 5: a report exited 0 with 2 of 6 plots. One byte changed inside an interval's
    payload: with run.json's manifest the checksum says so, without it the interval does
    not decode; either way one line names the file and exit 2."""
    copy = copy_run(run_dir, tmp_path)
    if not manifest:
        without_manifest(copy)
    hlog = copy / "histograms" / "rest-r1-latency.hlog"
    lines = hlog.read_text().splitlines(keepends=True)
    n = next(i for i, ln in enumerate(lines) if ln.startswith("Tag=get.ok,1."))
    head, payload = lines[n].rsplit(",", 1)
    lines[n] = f"{head},{payload[:20]}!{payload[21:]}"
    hlog.write_text("".join(lines))
    p = commbench("report", str(copy), "--out", str(tmp_path / "r.html"))
    assert p.returncode == 2
    line = one_line(p.stderr)
    assert f"{hlog}: damaged" in line
    assert ("SHA-256" in line) if manifest else (f"line {n + 1} is not an HdrHistogram" in line)


def test_interrupted_and_failed_targets_do_not_gate_compare(tmp_path: Path) -> None:
    """Case 7: a target interrupted after 0.76 s (its throughput far below the baseline's)
    is left out of --fail-on, as the README says; a figure of a whole target still gates."""
    a = write_run(tmp_path / "a", RunSpec(seed=1))
    b = write_run(tmp_path / "b", RunSpec(seed=1, targets=[
        TargetSpec("rest", 4.0), TargetSpec("grpc", 2.6)]))
    ctx = json.loads((b / "run.json").read_text())
    for t in ctx["targets"]:
        if t["name"] == "rest":
            t.update(status="interrupted", error="interrupted during the run (Ctrl-C)",
                     measured_s=0.76)
    (b / "run.json").write_text(json.dumps(ctx))
    s = pd.read_csv(b / "summary.csv")
    s.loc[s["target"] == "rest", "throughput_rps"] *= 0.2  # what a cut-short window gives
    s.to_csv(b / "summary.csv", index=False)

    p = commbench("compare", str(a), str(b), "--fail-on", "throughput:-5%", "--fail-on",
                  "p50:+10%")
    assert p.returncode == 1, p.stdout + p.stderr  # grpc's p50 rose 30 %: that still gates
    fails = [ln for ln in p.stdout.splitlines() if ln.startswith("FAIL")]
    assert fails and all(" grpc " in ln for ln in fails), fails
    skipped = [ln for ln in p.stdout.splitlines() if ln.startswith("NOT CHECKED")
               and "rest all throughput" in ln]
    assert skipped and "interrupted after 0.76 s in B" in skipped[0]
    rest_rows = [ln for ln in p.stdout.splitlines() if ln.startswith("rest ")]
    assert rest_rows and all(ln.rstrip().endswith("x") for ln in rest_rows), rest_rows

    p = commbench("compare", str(a), str(b), "--fail-on", "throughput:-5%")
    assert p.returncode == 0, p.stdout
