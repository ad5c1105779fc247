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

from reports import plots
from reports.claims import Claim, check_claims
from reports.errors import ReportError
from reports.findings import findings, noise_note
from reports.flow import CascadeTable, FlowTables, cascade_table, fault_spans, flow_tables
from reports.loader import Run, load_runs, same_scenario, scenario_warning
from reports.projection import ConsistencyTable, consistency_table, lag_over_time
from reports.tables import OPERATION_LABEL, Table, figures, tables, write_tables
from targets.redact import redact_text

_TEMPLATES = Path(__file__).parent / "templates"
# The first lines of every report this module writes; an existing file without it (or
# without the older generator tag) is never overwritten.
MARKER = "<!-- commbench-report"
_OLD_MARKER = '<meta name="generator" content="commbench">'


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
    by_url: dict[str, str] = field(default_factory=dict)  # target → its CPU note (--url)
    probes: set[str] = field(default_factory=set)  # targets driven by a probe client
    flow: FlowTables | None = None  # topology "chain": books and cost per service
    cascade: CascadeTable | None = None  # a run with faults, any topology
    consistency: ConsistencyTable | None = None  # eventsourced figures, read-your-writes


def write_report(run_dirs: Path | str | Sequence[Path | str], out: Path | None = None) -> Path:
    """Render the report of one or more runs (or of one sweep's folder); returns the path of
    the HTML file."""
    paths = [Path(run_dirs)] if isinstance(run_dirs, str | Path) else [Path(p) for p in run_dirs]
    if len(paths) == 1 and (paths[0] / "sweep.csv").is_file():
        from reports.sweep import write_sweep_report

        return write_sweep_report(paths[0], report_path(Path(out)) if out else None)
    runs = load_runs(paths)
    out = report_path(Path(out) if out else default_path(runs))
    assets = out.with_suffix("")
    warnings: list[str] = []
    if w := scenario_warning(runs):
        warnings.append(w)
    sections = []
    for run in runs:
        folder = assets if len(runs) == 1 else assets / run.run_id
        sections.append(_section(run, folder, out.parent))
        warnings += [redact_text(f"{run.run_id}: {w}" if len(runs) > 1 else w) for w in run.warnings]
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
        raise ReportError(f"{out}: cannot write the report ({exc.strerror})") from None
    return out


def default_path(runs: Sequence[Run]) -> Path:
    """Where a report goes without --out: <run>/report.html for one run; for several,
    <first run>/report-with-<other run ids joined by "-and-">.html, so a combined report
    never replaces a run's own report."""
    if len(runs) == 1:
        return runs[0].path / "report.html"
    others = "-and-".join(r.run_id for r in runs[1:])
    if len(others) > 200:  # file names stop at 255 bytes
        others = f"{len(runs) - 1}-more-runs"
    return runs[0].path / f"report-with-{others}.html"


def report_path(out: Path) -> Path:
    """Where `--out` writes: a path ending in .html is the file itself; any other path is a
    folder (created if missing, its parent must exist) that gets report.html inside. An
    existing file is replaced only when it is a commbench report."""
    if out.exists() and not out.is_dir() and not is_report(out):
        raise ReportError(f"{out}: exists and is not a commbench report; not overwriting it "
                        "(remove it or choose another --out)")
    if out.suffix.lower() not in (".html", ".htm") and not out.is_file() or out.is_dir():
        if not out.parent.is_dir():
            raise ReportError(f"{out.parent}: no such folder for the report")
        out.mkdir(exist_ok=True)
        out = out / "report.html"
    if not out.parent.is_dir():
        raise ReportError(f"{out.parent}: no such folder for the report")
    if out.is_dir():
        raise ReportError(f"{out}: is a folder inside a folder of that name; choose another --out")
    if out.exists() and not is_report(out):
        raise ReportError(f"{out}: exists and is not a commbench report; not overwriting it "
                        "(remove it or choose another --out)")
    return out


def is_report(path: Path) -> bool:
    """The file starts like a report this module wrote (marker in its first 2 KB)."""
    try:
        with path.open("rb") as f:
            head = f.read(2048).decode("utf-8", errors="replace")
    except OSError:
        return False
    return MARKER in head or _OLD_MARKER in head


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
                      tables=tables(df), files=[_rel(f, base) for f in files],
                      by_url=run.by_url(), probes=run.probes(), flow=flow_tables(run),
                      cascade=cascade_table(run), consistency=consistency_table(run))
    pdir = folder / "plots"
    spans = fault_spans(run)
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
        (plots.latency_over_time(run, spans), "latency-time", "Latency over time",
         "p99 solid, p50 dashed, per second of the measured window (warm-up and drain "
         "excluded), all operations together."),
        (plots.throughput_over_time(run, spans), "throughput-time", "Throughput over time",
         "Successful requests completed per second of the measured window (warm-up and the "
         "drain after it excluded), against the offered rate (black dashed). Targets that "
         "kept up with the same arrival schedule draw the same line, the last one on top."),
        (plots.queue_depth(run, spans), "queue-depth", "Queue depth over time",
         "Messages ready in each queue of the queue target, sampled once a second through a "
         "connection of the harness's own (RabbitMQ's AMQP shows ready messages only, not "
         "those delivered and not yet acknowledged); the fault windows shaded."),
        (lag_over_time(run, spans), "projection-lag", "Projection lag over time",
         "The eventsourced read model behind its log, per second (projection.csv): the p99 "
         "lag, from the append's commit to the event applied, of the events applied in that "
         "second (solid), and the age of the oldest event not applied yet as the second ends "
         "(dashed); the fault windows shaded. A crashed projector applies nothing: the dashed "
         "line climbs, and its restart applies the backlog with the lag it had accumulated."),
        (plots.cpu_per_request(df, run.targets, run.probes()), "cpu", "CPU per request",
         "CPU time over the measured window divided by every completed request, failures "
         "included: the target's processes (the broker included for the queue) and, where "
         "the run measured it, the load generator's (lighter bar)."),
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
    reps = s.get("repetitions", 1)
    rows = [("run", f"{run.run_id} ({c.get('status', '?')})"),
            ("scenario", f"{run.scenario_name}: {s.get('description', '')}".rstrip(": ")),
            ("scenario file", str(c.get("scenario_file", "–"))),
            ("load", _load_text(load)),
            ("duration", f"{_num(s.get('duration_s'))} s measured after "
                         f"{_num(s.get('warmup_s'))} s warm-up, {reps} "
                         f"repetition{'' if reps == 1 else 's'}"),
            ("operations", ", ".join(f"{k.replace('_', ' ')} {_num(v)}"
                                     for k, v in (s.get("operations") or {}).items()) or "–"),
            ("started / ended", f"{c.get('started_at', '?')} / {c.get('ended_at', '?')}"),
            ("machine", f"{env.get('cpu_model', '?')}, {env.get('cores', '?')} cores, "
                        f"{env.get('platform', '?')}"),
            ("pinning", _pinning(env.get("pinning"))),
            ("generator", ", ".join(f"{k.replace('_', ' ')} {_num(v)}"
                                    for k, v in (c.get("generator") or {}).items()) or "–")]
    if (broker := _broker(c)) is not None:
        rows.append(("broker", broker))
    rows += [("Python", str(env.get("python", "?"))),
             ("packages", ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items())
              or "–"),
             ("git revision", str(env.get("git_revision", "?")))]
    if args := c.get("arguments"):
        rows.append(("arguments", _arguments(args)))
    return rows


def _num(v: object) -> str:
    """5.0 → 5, 0.25 → 0.25, None → ?, anything else as text."""
    if v is None:
        return "?"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _arguments(args: object) -> str:
    if not isinstance(args, dict):
        return redact_text(str(args))
    shown = {k: v for k, v in args.items() if v not in (None, [], "", {})}
    return redact_text(", ".join(f"{k.replace('_', ' ')} {_plain(v)}" for k, v in sorted(shown.items()))
                  or "defaults")


def _plain(v: object) -> str:
    if isinstance(v, list | tuple):
        return ",".join(_plain(x) for x in v)
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return _num(v)


def _broker(c: dict[str, Any]) -> str | None:
    """'shared …' or 'private …' when run.json says (top-level or environment "broker")."""
    b = c.get("broker")
    if b is None:
        b = (c.get("environment") or {}).get("broker")
    if b is None:
        return None
    if isinstance(b, str):
        return redact_text(b)
    if not isinstance(b, dict):
        return str(b)
    shared = b.get("shared")
    if shared is None and b.get("private") is not None:
        shared = not b["private"]
    kind = str(b.get("kind") or b.get("mode") or "").lower()
    if shared is None and kind in ("shared", "private"):
        shared = kind == "shared"
    where = f" at {redact_text(str(b['url']))}" if b.get("url") else ""
    if shared is None:
        text = f"unknown whether shared or private{where}"
    elif shared:
        text = (f"shared{where}: an existing broker, so other work on it counts in the queue's "
                "CPU per request")
    else:
        text = f"private{where}: started for this run and stopped after it"
    return text


def _load_text(load: dict[str, Any]) -> str:
    if not load:
        return "–"
    model = str(load.get("model", "?"))
    parts = [model + " loop"]
    if load.get("rate") is not None:
        parts.append(f"{float(load['rate']):,.0f} requests/s")
    stages = load.get("stages") or []
    if len(stages) == 1:
        parts.append(f"{float(stages[0].get('rate', 0)):,.0f} requests/s")
    elif stages:
        parts.append("stages " + ", ".join(
            f"{_num(st.get('rate'))}/s for {_num(st.get('duration_s', st.get('duration')))} s"
            for st in stages))
    if model == "open":
        if load.get("arrival"):
            parts.append(f"{load['arrival']} arrivals")
        if load.get("in_flight") is not None:
            parts.append(f"at most {_num(load['in_flight'])} in flight")
    else:
        if load.get("users") is not None:
            parts.append(f"{_num(load['users'])} users")
        if load.get("think_time_s") is not None:
            parts.append(f"think time {_num(load['think_time_s'])} s")
    if load.get("timeout_s") is not None:
        parts.append(f"timeout {_num(load['timeout_s'])} s")
    return ", ".join(parts)


def _cpus(v: object) -> str:
    if v in (None, [], ""):
        return "not pinned"
    if isinstance(v, list | tuple | set):
        return ",".join(str(x) for x in v)
    return str(v)


def _pinning(p: object) -> str:
    if not p:
        return "not pinned"
    if isinstance(p, dict):
        names = {"target_cpus": "target CPUs", "load_cpus": "load generator CPUs"}
        return "; ".join(f"{names.get(k, k.replace('_', ' '))}: {_cpus(v)}" for k, v in p.items())
    return str(p)


def _targets(run: Run) -> list[dict[str, Any]]:
    return [{"name": t.get("name"),
             "client": f"{t.get('client', '')} (a probe, not a production client)"
             if t.get("probe_client") else t.get("client", ""),
             "server": t.get("server") or "",
             "reached": f"by URL ({redact_text(str(t.get('url') or ''))}); CPU {t.get('cpu')}"
             if t.get("measured_by_url") else "started by commbench",
             "repetition": t.get("repetition", 1), "status": t.get("status", "?"),
             "error": t.get("error") or "",
             "generator": "kept up" if not t.get("saturated") else "lagging (kept the rate)"
             if (t.get("schedule") or {}).get("flag") == "lagging" else "saturated"}
            for t in run.context.get("targets", [])]
