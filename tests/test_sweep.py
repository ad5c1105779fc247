"""`commbench sweep` end to end on a real target (short probes), and its one-line refusals."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

COMMBENCH = str(Path(sys.executable).parent / "commbench")
OPEN = """
name = "sweepme"
targets = ["rest"]
duration = "1s"
warmup = "0s"
[data]
users = 20
orders_per_user = 2
[load]
rate = 10
arrival = "uniform"
[operations]
get = 1
"""


def _sweep(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path | None]:
    scenario = tmp_path / "sweepme.toml"
    scenario.write_text(OPEN)
    results = tmp_path / "results"
    proc = subprocess.run([COMMBENCH, "sweep", str(scenario), "--results-dir", str(results),
                           *args], capture_output=True, text=True, timeout=180)
    folders = list(results.glob("*-sweep-sweepme")) if results.exists() else []
    return proc, folders[0] if folders else None


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_rates_each_run_once_and_land_in_sweep_csv(tmp_path: Path) -> None:
    proc, folder = _sweep(tmp_path, "--rates", "40,80")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert folder is not None
    rows = _csv(folder / "sweep.csv")
    assert [(r["target"], float(r["offered_rps"])) for r in rows] == [("rest", 40), ("rest", 80)]
    for r in rows:  # uniform arrivals over a whole second: the offered count is exact
        assert r["status"] == "ok" and float(r["achieved_rps"]) == pytest.approx(
            float(r["offered_rps"]), rel=0.1), r
        assert (folder / "probes" / r["run"] / "summary.csv").is_file()
    assert len({r["run"] for r in rows}) == 2
    rep = subprocess.run([COMMBENCH, "report", str(folder)], capture_output=True, text=True,
                         timeout=120)
    assert rep.returncode == 0 and rep.stdout.strip() == str(folder / "report.html"), rep.stderr
    html = (folder / "report.html").read_text()
    assert html.count('src="data:image/svg+xml;base64,') == 3
    for r in rows:  # every probe's figures, as sweep.csv holds them
        assert f"<td>{float(r['latency_p99_ms'])}</td>" in html
    assert sorted(p.name for p in (folder / "report-plots").iterdir()) == [
        "achieved.svg", "cpu.svg", "latency.svg"]


@pytest.mark.slow
def test_find_max_reports_what_no_probe_could_hold(tmp_path: Path) -> None:
    """An objective no real run can meet (p50 under a microsecond): the search halves the
    rate after each probe that broke it, or on which the generator saturated (a void probe
    still bounds the search from above), and, out of probes, says that nothing held."""
    proc, folder = _sweep(tmp_path, "--find-max", "--slo", "p50<0.001ms", "--start", "40",
                          "--max-probes", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert folder is not None
    probes = _csv(folder / "sweep.csv")
    assert all(r["held"] == "false" and "p50 < 0.001ms" in r["broken"] for r in probes)
    assert [float(r["offered_rps"]) for r in probes] == [40, 20]
    (row,) = _csv(folder / "max.csv")
    assert (row["target"], row["sustained_rps"]) == ("rest", "")
    # every probe broke, so a saturated one is void; the lowest probe says what bounded it
    assert row["probes"] == " ".join(
        f"{float(r['offered_rps']):g}-" + (f"({r['generator']})" if r["generator"] else "")
        for r in probes)
    if probes[-1]["saturated"] == "true":  # a busy machine: even 20/s was the generator's
        assert row["bound"] == "generator" and row["void_at_rps"] == "20"
        verb = "saturated" if probes[-1]["generator"] == "saturated" else "lagged"
        assert f"rest: no probe held before the generator {verb}" in proc.stdout
    else:
        assert row["bound"] == "probes" and row["broke_at_rps"] == "20"
        assert "rest: no probe held\n" in proc.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--rates", "a,b"], 'commbench: --rates takes numbers separated by commas, e.g. "200,400", '
                         "got 'a,b'"),
    (["--find-max"], 'commbench: sweep --find-max needs --slo, e.g. --slo "p99<50ms,errors<1%" '
                     "(or the scenario's [slo] all = \"…\")"),
    ([], "commbench: sweep: give --rates R1,R2,… or --find-max (one of the two)"),
    (["--find-max", "--slo", "p99<fast"], "commbench: --slo: 'p99<fast': p99 takes a duration "
                                          'with its unit, such as "50ms"'),
])
def test_bad_sweeps_cost_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    proc, folder = _sweep(tmp_path, *args)
    assert proc.returncode == 2
    assert proc.stderr.strip() == message
    assert folder is None
