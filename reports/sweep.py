"""The report of a sweep folder (`commbench sweep`): achieved against offered rate, latency
against offered rate and CPU per request against offered rate, one line per target, with the
probes where a target fell short of the offered rate (or the generator saturated) marked;
after --find-max, each target's highest sustained rate with the probes that decided it; and
the article's speed claims judged on these figures (reports.sweep_claims).
One self-contained HTML file, like the run report; the plots also land as SVG beside it.
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from reports import plots
from reports.errors import ReportError
from reports.sweep_claims import SHORT_OF, claims_html, generator_flags, load_sweep, sweep_claims

_DOC = """<!DOCTYPE html>
<!-- commbench-report: written by `commbench report`; may be overwritten by it -->
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="commbench">
<title>{title}</title><style>
body {{ margin: 0; font: 14px/1.45 system-ui, sans-serif; color: #1d2430; }}
main {{ max-width: 1180px; margin: 0 auto; padding: 24px 28px 64px; }}
h1 {{ font-size: 22px; }} h2 {{ font-size: 18px; border-bottom: 2px solid #d9dee5; }}
table {{ border-collapse: collapse; }} th, td {{ padding: 4px 8px; border-bottom: 1px solid
#d9dee5; text-align: right; }} th:first-child, td:first-child {{ text-align: left; }}
.note {{ color: #5b6472; font-size: 12.5px; }} img {{ max-width: 100%; }}
table.claims td {{ text-align: left; vertical-align: top; }} table.claims ul {{ margin: 0;
padding-left: 16px; font-size: 12.5px; }} .verdict {{ padding: 1px 8px; border-radius: 10px;
font-size: 12px; font-weight: 600; white-space: nowrap; }} .supported {{ background: #dff3e4; }}
.refuted {{ background: #fbe3e3; }} .not-decided {{ background: #fff0cc; }}
.not-measured-here {{ background: #eceff3; }}
</style></head><body><main>
<h1>{title}</h1><p class="note">generated {generated} from {folder}</p>
{body}
</main></body></html>
"""


def write_sweep_report(folder: Path, out: Path | None = None) -> Path:
    """Render `folder`'s sweep.csv (and max.csv) to `out` (default: folder/report.html)."""
    try:
        df = pd.read_csv(folder / "sweep.csv")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ReportError(f"{folder}: no readable sweep.csv ({exc})") from None
    df["generator"] = generator_flags(df)
    out = out or folder / "report.html"
    order = list(dict.fromkeys(df["target"]))
    body = []
    maxima = folder / "max.csv"
    if maxima.is_file():
        m = pd.read_csv(maxima, dtype=str).fillna("")
        body.append("<h2>Highest sustained rate</h2>" + _table(
            m[["target", "objective", "verdict", "rps_per_server_core", "probes"]],
            ["target", "objective", "sustained", "req/s per server core",
             "probes (+ held, − broke)"]))
        body.append('<p class="note">A probe on which the generator saturated (fell behind) '
                    "or lagged (kept the rate with a lag that could account for a fifth or "
                    "more of the p99) never decides a target's limit when the objective broke "
                    "or the rate was not sent; it only bounds the search from above, which "
                    "goes on below it (\"the generator saturated at R\", or \"lagged\").</p>")
    body.append(claims_html(sweep_claims(load_sweep(folder, df))))
    body.append("<h2>Against the offered rate</h2>")
    for name, fig, caption in _figures(df, order):
        svg = plots.save(fig, out.parent / (out.stem + "-plots") / f"{name}.svg")
        uri = "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
        body.append(f'<figure><img alt="{name}" src="{uri}"><figcaption class="note">'
                    f"{caption}</figcaption></figure>")
    body.append("<h2>Probes</h2>" + _table(df[[
        "target", "offered_rps", "repetition", "status", "achieved_rps", "latency_p50_ms",
        "latency_p99_ms", "error_rate", "cpu_us_per_request", "generator", "held", "run"]].fillna(""),
        ["target", "offered", "rep", "status", "achieved", "p50 ms", "p99 ms", "errors",
         "CPU µs/req", "generator", "held", "run folder (probes/)"]))
    html = _DOC.format(title=f"commbench sweep: {folder.name}", folder=folder.name,
                       generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                       body="\n".join(body))
    try:
        out.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"{out}: cannot write the report ({exc.strerror})") from None
    return out


def _figures(df: pd.DataFrame, order: list[str]) -> list[tuple[str, Figure, str]]:
    g = df.groupby(["target", "offered_rps"], sort=True).agg(
        achieved=("achieved_rps", "mean"), p50=("latency_p50_ms", "median"),
        p99=("latency_p99_ms", "median"), cpu=("cpu_us_per_request", "mean"),
        client=("client_cpu_us_per_request", "mean"),
        saturated=("saturated", "any")).reset_index()
    out = []
    fig, ax = plots._figure()
    top = float(g["offered_rps"].max())
    ax.plot([0, top], [0, top], color="black", ls=(0, (4, 3)), lw=1, label="offered")
    for t in order:
        d = g[g["target"] == t]
        ax.plot(d["offered_rps"], d["achieved"], marker="o", color=plots.colour(t, order), label=t)
        short = d[(d["achieved"] < SHORT_OF * d["offered_rps"]) | d["saturated"]]
        ax.scatter(short["offered_rps"], short["achieved"], s=90, facecolors="none",
                   edgecolors="#d62728", zorder=5)
    ax.set_xlabel("offered rate (requests/s)")
    ax.set_ylabel("achieved (requests/s)")
    ax.legend(loc="upper left", frameon=False)
    out.append(("achieved", fig, "Achieved against offered rate; red rings: the target fell "
                f"below {SHORT_OF:.0%} of the offered rate, or the generator saturated."))
    fig, ax = plots._figure()
    for t in order:
        d = g[g["target"] == t]
        c = plots.colour(t, order)
        ax.plot(d["offered_rps"], d["p99"], marker="o", color=c, label=f"{t} p99")
        ax.plot(d["offered_rps"], d["p50"], marker=".", ls=":", color=c, label=f"{t} p50")
    plots._log_ms(ax, "latency (ms, log)")
    ax.set_xlabel("offered rate (requests/s)")
    plots._legend_below(ax, 2 * len(order))
    out.append(("latency", fig, "p50 and p99 from the intended start, against the offered "
                "rate (median over repetitions)."))
    fig, ax = plots._figure()
    for t in order:
        d = g[g["target"] == t]
        c = plots.colour(t, order)
        ax.plot(d["offered_rps"], d["cpu"], marker="o", color=c, label=f"{t} target")
        ax.plot(d["offered_rps"], d["client"], marker=".", ls=":", color=c,
                label=f"{t} generator")
    ax.set_xlabel("offered rate (requests/s)")
    ax.set_ylabel("CPU µs per request")
    plots._legend_below(ax, 2 * len(order))
    out.append(("cpu", fig, "CPU time per request of the target's processes (the broker's "
                "included for the queue) and of the generator, against the offered rate."))
    return out


def _table(df: pd.DataFrame, headers: list[str]) -> str:
    from html import escape

    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    rows = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in r) + "</tr>"
                   for r in df.itertuples(index=False))
    return f"<table><tr>{head}</tr>{rows}</table>"
