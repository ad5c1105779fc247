"""One self-contained report.html from one or more run folders (Jinja2, inline CSS and SVG
images as data URIs, no network fetch). Tables and plots are also written as files beside
the report: `<out without .html>/tables/*.csv|md` and `.../plots/*.svg` (one subfolder per
run when several runs are reported together).

Several runs of one scenario are reported one after another, plus a throughput-against-
latency plot when they (or a run's stages) offered different rates. Runs of different
scenarios are each reported on their own with a warning; nothing is compared across them.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from harness.errors import UserError
from reports import plots
from reports.claims import Claim, check_claims
from reports.findings import findings, noise_note
from reports.loader import Run, load_runs, same_scenario, scenario_warning
from reports.tables import OPERATION_LABEL, Table, figures, tables, write_tables

_TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class Plot:
    title: str
    caption: str
    data_uri: str
    file: str  # path relative to the report


@dataclass
class Section:
    run: Run
    context: list[tuple[str, str]]
    targets: list[dict[str, Any]]
    findings: list[str]
    noise: str
    claims: list[Claim]
    tables: list[Table]
    plots: list[Plot] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def write_report(run_dirs: Path | str | Sequence[Path | str], out: Path | None = None) -> Path:
    """Render the report of one or more runs; returns the path of the HTML file."""
    paths = [Path(run_dirs)] if isinstance(run_dirs, str | Path) else [Path(p) for p in run_dirs]
    runs = load_runs(paths)
    out = Path(out) if out else runs[0].path / "report.html"
    if out.is_dir():
        out = out / "report.html"
    if not out.parent.is_dir():
        raise UserError(f"{out.parent}: no such folder for the report")
    assets = out.with_suffix("")
    warnings: list[str] = []
    if w := scenario_warning(runs):
        warnings.append(w)
    sections = []
    for run in runs:
        folder = assets if len(runs) == 1 else assets / run.run_id
        sections.append(_section(run, folder, out.parent))
        warnings += [f"{run.run_id}: {w}" if len(runs) > 1 else w for w in run.warnings]
    cross: list[Plot] = []
    if same_scenario(runs):
        order = list(dict.fromkeys(t for r in runs for t in r.targets))
        fig = plots.throughput_vs_latency(plots.rate_points(runs), order)
        if fig is not None:
            cross.append(_plot(fig, assets / "plots" / "throughput-latency.svg", out.parent,
                               "Throughput against latency",
                               "One point per target and offered rate; p99 over every "
                               "operation. The knee is where a target stops keeping up."))
    html = _env().get_template("report.html.j2").render(
        title=_title(runs), generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        warnings=warnings, sections=sections, cross=cross, several=len(runs) > 1,
        operation_label=OPERATION_LABEL)
    try:
        out.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{out}: cannot write the report ({exc.strerror})") from None
    return out


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES),
                              autoescape=jinja2.select_autoescape(["html", "j2"]),
                              undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True)


def _title(runs: Sequence[Run]) -> str:
    if len(runs) == 1:
        return f"commbench report: {runs[0].scenario_name} ({runs[0].run_id})"
    return f"commbench report: {len(runs)} runs"


def _section(run: Run, folder: Path, base: Path) -> Section:
    df = figures(run)
    files = write_tables(df, folder / "tables") if not df.empty else []
    section = Section(run=run, context=_context(run), targets=_targets(run),
                      findings=findings(run, df), noise=noise_note(df),
                      claims=check_claims(run, df) if not df.empty else [],
                      tables=tables(df), files=[_rel(f, base) for f in files])
    pdir = folder / "plots"
    ops = [t.operation for t in section.tables if t.operation != "all"] or ["all"]
    for op in ops:
        fig = plots.percentile_spectrum(run, op)
        if fig is not None:
            section.plots.append(_plot(
                fig, pdir / f"spectrum-{op}.svg", base,
                f"Latency by percentile: {OPERATION_LABEL.get(op, op)}",
                "From the merged HdrHistograms (warm-up excluded, every repetition); the "
                "x axis stretches the tail: 90 %, 99 %, 99.9 %, 99.99 %. The y axis starts at "
                "half the lowest p10."))
    for fig, name, title, caption in (
        (plots.latency_over_time(run), "latency-time", "Latency over time",
         "p99 solid, p50 dashed, per second of measurement, all operations together."),
        (plots.throughput_over_time(run), "throughput-time", "Throughput over time",
         "Requests completed per second against the intended rate (dotted)."),
        (plots.cpu_per_request(df, run.targets), "cpu", "CPU per request",
         "CPU time of every process of the target (the broker included for the queue) "
         "divided by completed requests."),
    ):
        if fig is not None:
            section.plots.append(_plot(fig, pdir / f"{name}.svg", base, title, caption))
    return section


def _plot(fig: object, path: Path, base: Path, title: str, caption: str) -> Plot:
    svg = plots.save(fig, path)
    uri = "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
    return Plot(title, caption, uri, _rel(path, base))


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def _context(run: Run) -> list[tuple[str, str]]:
    c, s = run.context, run.scenario
    env = c.get("environment") or {}
    load = s.get("load") or {}
    rows = [("run", f"{run.run_id} ({c.get('status', '?')})"),
            ("scenario", f"{run.scenario_name}: {s.get('description', '')}".rstrip(": ")),
            ("scenario file", str(c.get("scenario_file", "–"))),
            ("load", _load_text(load)),
            ("duration", f"{s.get('duration_s', '?')} s measured after {s.get('warmup_s', '?')} "
                         f"s warm-up, {s.get('repetitions', 1)} repetition(s)"),
            ("operations", ", ".join(f"{k} {v}" for k, v in (s.get("operations") or {}).items())
             or "–"),
            ("started / ended", f"{c.get('started_at', '?')} / {c.get('ended_at', '?')}"),
            ("machine", f"{env.get('cpu_model', '?')}, {env.get('cores', '?')} cores, "
                        f"{env.get('platform', '?')}"),
            ("pinning", _pinning(env.get("pinning"))),
            ("generator", ", ".join(f"{k} {v}" for k, v in (c.get("generator") or {}).items())
             or "–"),
            ("Python", str(env.get("python", "?"))),
            ("packages", ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items())
             or "–"),
            ("git revision", str(env.get("git_revision", "?")))]
    if args := c.get("arguments"):
        rows.append(("arguments", json.dumps(args, sort_keys=True)))
    return rows


def _load_text(load: dict[str, Any]) -> str:
    if not load:
        return "–"
    parts = [str(load.get("model", "?")) + " loop"]
    if load.get("rate") is not None:
        parts.append(f"{float(load['rate']):,.0f} requests/s")
    stages = load.get("stages") or []
    if len(stages) == 1:
        parts.append(f"{float(stages[0].get('rate', 0)):,.0f} requests/s")
    elif stages:
        parts.append("stages " + ", ".join(
            f"{st.get('rate')}/s for {st.get('duration_s', st.get('duration'))} s"
            for st in stages))
    open_loop = load.get("model", "open") == "open"
    keys = ("arrival", "in_flight", "timeout_s") if open_loop else ("users", "think_time_s",
                                                                      "timeout_s")
    for key in keys:
        if load.get(key) is not None:
            parts.append(f"{key.replace('_', ' ')} {load[key]}")
    return ", ".join(parts)


def _pinning(p: object) -> str:
    if not p:
        return "none"
    if isinstance(p, dict):
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in p.items())
    return str(p)


def _targets(run: Run) -> list[dict[str, Any]]:
    return [{"name": t.get("name"), "client": t.get("client", ""),
             "repetition": t.get("repetition", 1), "status": t.get("status", "?"),
             "error": t.get("error") or "", "saturated": bool(t.get("saturated"))}
            for t in run.context.get("targets", [])]
