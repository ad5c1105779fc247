"""The speed claims judged on a sweep: pure logic on hand-made sweep data, and one real sweep."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from reports.claims import NOT_MEASURED, REFUTED, STACKS_CAVEAT, SUPPORTED, UNDECIDED, too_few_reps
from reports.sweep_claims import (
    SweepData,
    claims_html,
    grpc_fast,
    load_sweep,
    rest_blocking,
)
from reports.tables import fmt

COMMBENCH = str(Path(sys.executable).parent / "commbench")


def _probe(target: str, rate: float, rep: int, *, p50: float = 1.0, p99: float = 4.0,
           cpu: float = 100.0, client: float = 50.0, saturated: bool = False,
           held: bool | None = True, status: str = "ok", answered: float = 1.0,
           **more: Any) -> dict[str, Any]:
    """One sweep.csv row; repetitions differ by 1 % so their ranges are narrow, not empty."""
    k = 1 + 0.01 * (rep - 2)
    return {"target": target, "offered_rps": rate, "repetition": rep, "status": status,
            "achieved_rps": rate, "throughput_rps": rate * answered,
            "latency_p50_ms": p50 * k, "latency_p99_ms": p99 * k, "error_rate": 0.0,
            "cpu_us_per_request": cpu * k, "client_cpu_us_per_request": client * k,
            "saturated": saturated, "held": held,
            "broken": "" if held is not False else "all: p99 < 50ms", "run": f"p{rate:g}",
            **more}


def _ops(target: str, rate: float, rep: int, op: str, p50: float,
         count: int = 10_000) -> dict[str, Any]:
    """One per-operation row of a probe run's summary.csv."""
    return {"target": target, "offered_rps": rate, "repetition": rep, "operation": op,
            "count": count, "latency_p50_ms": p50 * (1 + 0.01 * (rep - 2))}


def _sweep(figures: dict[str, dict[str, Any]], *, rates: tuple[float, ...] = (100, 200),
           reps: int = 3, maxima: list[dict[str, Any]] | None = None,
           creates: dict[str, tuple[str, float]] | None = None,
           at: dict[tuple[str, float], dict[str, Any]] | None = None) -> SweepData:
    """A sweep of `figures` (target → _probe keywords) at `rates`, `at` overriding one
    target at one rate; `creates` (target → operation, p50) adds creation rows."""
    rows, ops = [], []
    for rate in rates:
        for target, kw in figures.items():
            for rep in range(1, reps + 1):
                rows.append(_probe(target, rate, rep, **{**kw, **(at or {}).get((target, rate), {})}))
                ops.append(_ops(target, rate, rep, "all", kw.get("p50", 1.0)))
                if creates and target in creates:
                    ops.append(_ops(target, rate, rep, *creates[target]))
    m = pd.DataFrame(maxima) if maxima else None
    return SweepData(pd.DataFrame(rows), m, pd.DataFrame(ops))


def _max(target: str, sustained: float | None, broke: float | None, bound: str,
         verdict: str) -> dict[str, Any]:
    return {"target": target, "sustained_rps": sustained, "broke_at_rps": broke,
            "bound": bound, "verdict": verdict}


FAST = {"p50": 1.0, "p99": 4.0, "cpu": 100.0}
SLOW = {"p50": 2.0, "p99": 8.0, "cpu": 200.0}
LIMITS = [_max("grpc", 1600, 1680, "target", "1600 req/s (broke at 1680 req/s)"),
          _max("rest", 800, 840, "target", "800 req/s (broke at 840 req/s)")]


# ---- gRPC is faster than REST ------------------------------------------------------------------

def test_grpc_ahead_on_every_figure_is_supported() -> None:
    c = grpc_fast(_sweep({"grpc": FAST, "rest": SLOW}, maxima=LIMITS))
    assert c.verdict == SUPPORTED, c
    # the limit, and per rate: CPU, p50, p99
    assert c.reason == ("gRPC was faster on every figure that differed beyond the measured "
                        "noise, and no figure pointed the other way (7 of 7 figures decided, "
                        "0 within the noise)" + STACKS_CAVEAT)
    assert c.evidence[0].startswith("highest rate sustained within the objectives: gRPC 1600 "
                                    "req/s (broke at 1680 req/s); REST 800 req/s (broke at 840")
    assert "10,000 vs 5,000 requests per server core-second" in c.evidence[1]
    assert any(e.startswith("requests at 200 req/s, p99: gRPC 4.00") for e in c.evidence)


def test_rest_ahead_on_every_figure_is_refuted() -> None:
    limits = [_max("grpc", 400, 420, "target", "400 req/s (broke at 420 req/s)"),
              _max("rest", 800, 840, "target", "800 req/s (broke at 840 req/s)")]
    c = grpc_fast(_sweep({"grpc": SLOW, "rest": FAST}, maxima=limits))
    assert c.verdict == REFUTED, c
    assert c.reason.startswith("REST was faster on every figure")


def test_figures_both_ways_or_within_noise_are_not_decided() -> None:
    c = grpc_fast(_sweep({"grpc": {**FAST, "cpu": 200.0}, "rest": {**SLOW, "cpu": 100.0}}))
    assert c.verdict == UNDECIDED
    assert c.reason.startswith("the decided figures point both ways: gRPC faster on 4, REST "
                               "faster on 2")
    close = [LIMITS[0], _max("rest", 1400, 1700, "target", "1400 req/s (broke at 1700 req/s)")]
    c = grpc_fast(_sweep({"grpc": FAST, "rest": {**FAST, "cpu": 105.0}}, maxima=close))
    assert (c.verdict, c.reason) == (UNDECIDED, "every difference is within the measured noise"
                                     + STACKS_CAVEAT)
    assert c.evidence[0].endswith("REST 1400 req/s (broke at 1700 req/s): the ranges overlap "
                                  "or the gap is 10 % or less")


@pytest.mark.parametrize("reps", [1, 2])
def test_too_few_repetitions_give_an_observation_only(reps: int) -> None:
    c = grpc_fast(_sweep({"grpc": FAST, "rest": SLOW}, reps=reps, maxima=LIMITS))
    assert c.verdict == UNDECIDED
    assert c.reason == too_few_reps(reps) + STACKS_CAVEAT
    assert c.observation.startswith("observed in this sweep, not a verdict: gRPC ahead on 7 "
                                    "and REST ahead on 0 of 7 figures")
    assert f"{reps} repetition(s) per probe, too few for a verdict" in c.evidence[0]


def test_a_limit_the_generator_set_never_decides() -> None:
    """gRPC's search stopped where the generator saturated: "≥ 1600" is the generator's figure,
    so only the per-rate figures count; they are equal, so nothing is decided."""
    limits = [_max("grpc", 1600, None, "generator",
                   "1600 req/s or more: the generator saturated above it"), LIMITS[1]]
    c = grpc_fast(_sweep({"grpc": FAST, "rest": FAST}, maxima=limits))
    assert c.verdict == UNDECIDED
    assert c.evidence[0] == (
        "highest rate sustained within the objectives: gRPC 1600 req/s or more: the generator "
        "saturated above it; REST 800 req/s (broke at 840 req/s); not counted: gRPC's limit "
        "was set by the generator, not the target, and a limit the generator set never decides")
    assert c.reason == "every difference is within the measured noise" + STACKS_CAVEAT
    both = [limits[0], _max("rest", 400, None, "generator",
                            "400 req/s or more: the generator saturated above it")]
    c = grpc_fast(_sweep({"grpc": FAST, "rest": FAST}, maxima=both))
    assert c.evidence[0].endswith("not counted: the generator set both limits, not the "
                                  "targets, and it never decides")


def test_cpu_counts_where_the_generator_saturated_latency_does_not() -> None:
    """At 200 req/s the generator fell behind on REST: its latency there is not compared, but
    the server's CPU per request is, and it alone decides at that rate."""
    c = grpc_fast(_sweep({"grpc": FAST, "rest": {**SLOW, "p50": 1.0, "p99": 4.0}},
                         at={("rest", 200): {"saturated": True, "p50": 0.5}}))
    assert c.verdict == SUPPORTED, c
    assert "(2 of 4 figures decided, 2 within the noise)" in c.reason
    assert "latency not compared at 200 req/s: the generator saturated on REST" in c.evidence
    assert c.evidence[-2].endswith("requests per server core-second")  # it sent every request
    assert not any(e.startswith("requests at 200") for e in c.evidence)


def test_a_lagging_generator_is_named_so_and_voids_latency_as_well() -> None:
    """On REST at 200 req/s the generator kept the rate but lagged (its lag a fifth of the
    p99): latency there is not compared either, and the evidence says which it was."""
    c = grpc_fast(_sweep({"grpc": FAST, "rest": {**SLOW, "p50": 1.0, "p99": 4.0}},
                         at={("rest", 200): {"saturated": True, "generator": "lagging",
                                             "p50": 0.5}}))
    assert "latency not compared at 200 req/s: the generator lagged on REST" in c.evidence
    assert not any("saturated" in e for e in c.evidence)


def test_cpu_over_too_few_clock_ticks_is_not_counted() -> None:
    """gRPC's 100 µs over 3,000 requests is 0.3 s of CPU, 30 ticks of 10 ms: too coarse."""
    data = _sweep({"grpc": FAST, "rest": {**FAST, "cpu": 200.0}}, rates=(100,))
    data.ops["count"] = 3000
    c = grpc_fast(data)
    assert c.evidence[0].endswith("not counted: a repetition's CPU spans 30 clock ticks of "
                                  "10 ms, too coarse to separate them (needs 50: longer probes "
                                  "or higher rates)")
    assert (c.verdict, c.reason) == (UNDECIDED, "every difference is within the measured noise"
                                     + STACKS_CAVEAT)
    data.ops["count"] = 6000  # 60 ticks: counted
    assert grpc_fast(data).verdict == SUPPORTED


def test_cpu_where_the_generator_fell_short_says_what_was_sent() -> None:
    data = _sweep({"grpc": FAST, "rest": SLOW}, rates=(400,),
                  at={("rest", 400): {"saturated": True}})
    data.probes.loc[data.probes["target"] == "rest", "achieved_rps"] = 300.0
    c = grpc_fast(data)
    assert c.evidence[0].endswith("(the generator sent gRPC 400 and REST 300 req/s)")
    assert c.verdict == SUPPORTED


def test_latency_past_the_objective_or_short_of_the_rate_is_not_compared() -> None:
    c = grpc_fast(_sweep({"grpc": FAST, "rest": SLOW},
                         at={("rest", 200): {"held": False},
                             ("grpc", 100): {"held": None, "answered": 0.9}}))
    assert c.evidence[-1] == ("latency not compared at 100 req/s: gRPC answered 90% of the "
                              "requests sent; at 200 req/s: REST broke the objectives "
                              "(all: p99 < 50ms)")
    assert c.verdict == SUPPORTED  # the CPU at both rates


def test_a_probe_client_is_never_a_side() -> None:
    c = grpc_fast(SweepData(_sweep({"grpc": FAST, "rest": SLOW}).probes,
                            probe_clients=frozenset({"rest"})))
    assert (c.verdict, c.reason) == (NOT_MEASURED, "needs both a REST and a gRPC target in "
                                                   "the sweep")


# ---- REST's blocking call costs its caller time ------------------------------------------------

BLOCKING = {"rest": ("create", 6.0), "queue": ("create_accepted", 1.0)}


def test_a_rest_caller_waiting_longer_at_every_rate_is_supported() -> None:
    c = rest_blocking(_sweep({"rest": {}, "queue": {"client": 80.0}}, creates=BLOCKING))
    assert c.verdict == SUPPORTED, c
    assert c.reason.startswith("the queue producer was faster on every figure that differed "
                               "beyond the measured noise, and no figure pointed the other way "
                               "(2 of 2 figures decided, 0 within the noise)")
    assert c.evidence[0].startswith("order creations at 100 req/s, p50: REST completed 6.00")
    assert c.evidence[2] == ("from 100 to 200 req/s REST's completed wait (p50) went from "
                             "6.00 to 6.00 ms (×1.00), the queue's accept wait from 1.00 to "
                             "1.00 ms (×1.00); stated, not counted")
    assert c.evidence[3].startswith("the caller's (generator's) CPU per request: REST 50 µs vs "
                                    "the queue 80 µs at 100 req/s")


def test_a_rest_caller_answered_sooner_is_refuted_and_few_reps_observed() -> None:
    creates = {"rest": ("create", 1.0), "queue": ("create_accepted", 6.0)}
    c = rest_blocking(_sweep({"rest": {}, "queue": {}}, creates=creates))
    assert c.verdict == REFUTED, c
    assert c.reason.startswith("the REST caller was faster on every figure")
    c = rest_blocking(_sweep({"rest": {}, "queue": {}}, creates=BLOCKING, reps=2))
    assert c.verdict == UNDECIDED
    assert c.reason.startswith(too_few_reps(2))
    assert c.observation.startswith("observed in this sweep, not a verdict: the queue producer "
                                    "released sooner on 2")


def test_waits_at_rates_not_held_are_not_compared() -> None:
    c = rest_blocking(_sweep({"rest": {}, "queue": {}}, creates=BLOCKING, rates=(100,),
                             at={("queue", 100): {"saturated": True}}))
    assert c.verdict == UNDECIDED
    assert c.reason.startswith("no offered rate at which both held")
    assert c.evidence == ["waits not compared at 100 req/s: the generator saturated on the "
                          "queue"]


def test_no_creations_measure_nothing() -> None:
    c = rest_blocking(_sweep({"rest": {}, "queue": {}}))
    assert c.verdict == NOT_MEASURED
    assert c.reason.startswith("needs order creations on both")


def test_the_section_shows_verdict_figures_and_reason() -> None:
    claims = [grpc_fast(_sweep({"grpc": FAST, "rest": SLOW}, maxima=LIMITS))]
    html = claims_html(claims)
    assert '<span class="verdict supported">supported</span>' in html
    assert "<li>highest rate sustained within the objectives: gRPC 1600 req/s" in html
    assert html.count("<li>") == len(claims[0].evidence)


def test_an_unreadable_probe_folder_is_named_not_misread(tmp_path: Path) -> None:
    probes = _sweep({"rest": {}, "queue": {}}, rates=(100,)).probes
    data = load_sweep(tmp_path, probes)
    assert data.ops is None and data.notes == (
        f"per-operation figures of probe p100 left out: {tmp_path / 'probes' / 'p100'}: no such "
        "folder",)
    c = rest_blocking(data)
    assert c.verdict == NOT_MEASURED and c.evidence == list(data.notes)


# ---- one real sweep -----------------------------------------------------------------------------

REAL = """
name = "sweepclaims"
targets = ["rest", "grpc", "queue"]
duration = "1s"
warmup = "0s"
[data]
users = 20
orders_per_user = 2
[load]
rate = 10
arrival = "uniform"
[operations]
create = 1
"""


@pytest.mark.slow
def test_a_real_sweep_reports_both_claims_from_its_figures(tmp_path: Path) -> None:
    """REST, gRPC and the queue creating orders at one rate, one repetition: both claims are
    judged on the sweep's figures and, with one repetition, give observations only."""
    scenario = tmp_path / "sweepclaims.toml"
    scenario.write_text(REAL)
    proc = subprocess.run([COMMBENCH, "sweep", str(scenario), "--rates", "30", "--report",
                           "--results-dir", str(tmp_path / "results")],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (folder,) = (tmp_path / "results").glob("*-sweep-sweepclaims")
    with open(folder / "sweep.csv", newline="") as f:
        rows = {r["target"]: r for r in csv.DictReader(f)}
    html = (folder / "report.html").read_text()
    assert "The article's claims, on the sweep" in html
    assert html.count('<span class="verdict not-decided">not decided</span>') == 2, html
    cpu = {t: fmt(float(rows[t]["cpu_us_per_request"]), "cpu") for t in ("grpc", "rest")}
    assert (f"server CPU per request at 30 req/s, cpu: gRPC {cpu['grpc']} µs vs REST "
            f"{cpu['rest']} µs") in html
    behind = {t for t, r in rows.items() if r["saturated"] == "true"}
    # the flag's kind beside it: fell behind, or kept the rate and lagged
    assert all((r["generator"] in ("saturated", "lagging")) == (r["saturated"] == "true")
               and r["generator"] in ("", "saturated", "lagging") for r in rows.values()), rows
    # on a busy machine the generator may fall behind: that target's latency is not compared
    if behind & {"grpc", "rest"}:
        assert re.search(r"latency not compared at 30 req/s: the generator (saturated|lagged) on",
                         html)
        assert "no figure could be counted (each line above says why)" in html
    else:
        assert "<li>requests at 30 req/s, p50: gRPC" in html
    if behind & {"rest", "queue"}:
        assert re.search(r"waits not compared at 30 req/s: the generator (saturated|lagged) on",
                         html)
    else:  # the waits come from the probe's summary.csv (sweep.csv has only "all")
        assert "<li>order creations at 30 req/s, p50: REST completed" in html
    one_rep = escape(too_few_reps(1))
    assert html.count(one_rep) == (not behind & {"grpc", "rest"}) + (not behind & {"rest", "queue"})
