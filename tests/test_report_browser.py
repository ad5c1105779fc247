"""Open report.html in headless Chromium (Debian's `chromium`) over the DevTools protocol.

No Node: a few DevTools calls over aiohttp's websocket client. Checks what a reader would
hit: console errors, images that do not decode, missing tables, any network request other
than the file itself, content wider than the window. Saves a screenshot under
test-artifacts/ (git-ignored) for a human to look at.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import pandas as pd
import pytest

from reports.html import write_report
from tests.browser import Chromium
from tests.report_runs import partial_copy, real_run

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

# Never skipped: `make test` installs chromium (scripts/system-deps.sh); without it these
# tests fail saying so.
pytestmark = pytest.mark.slow

_INSPECT = """(() => {
  const imgs = [...document.images].map(i => ({alt: i.alt, complete: i.complete,
      w: i.naturalWidth, h: i.naturalHeight, data: i.src.startsWith('data:')}));
  const tables = [...document.querySelectorAll('table.figures')].map(t => ({
      op: t.dataset.operation, rows: t.tBodies[0].rows.length,
      cols: t.tHead.rows[0].cells.length}));
  const overflow = [...document.querySelectorAll('main > *, section > *')]
      .filter(e => !e.classList.contains('scroll') && e.scrollWidth > e.clientWidth + 1)
      .map(e => e.tagName + '.' + e.className);
  const text = n => n ? n.textContent.trim() : null;
  const figures = [...document.querySelectorAll('table.figures[data-operation]')].map(t => ({
      op: t.dataset.operation,
      head: [...t.tHead.rows[0].cells].map(c => text(c.childNodes[0])),
      rows: [...t.tBodies[0].rows].map(r => [...r.cells].map(
          (c, i) => i === 0 ? text(c.childNodes[0]) : text(c.querySelector('.v'))))}));
  return {title: document.title, imgs, tables, overflow, figures,
          claims: document.querySelectorAll('table.claims tbody tr').length,
          findings: document.querySelectorAll('ul.findings li').length,
          warnings: [...document.querySelectorAll('#warnings li')].map(l => l.textContent),
          pageWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
          height: document.documentElement.scrollHeight};
})()"""


def inspect(chromium: Chromium, page: Path, screenshot: Path) -> dict[str, Any]:
    return asyncio.run(_inspect(chromium.port, page, screenshot))


async def _inspect(port: int, page: Path, screenshot: Path) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
            targets = await r.json()
        ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        async with http.ws_connect(ws_url, max_msg_size=0) as ws:
            return await _drive(ws, page, screenshot)


async def _drive(ws: aiohttp.ClientWebSocketResponse, page: Path,
                 screenshot: Path) -> dict[str, Any]:
    ids = iter(range(1, 10_000))
    events: list[dict[str, Any]] = []
    results: dict[int, dict[str, Any]] = {}

    async def call(method: str, **params: Any) -> dict[str, Any]:
        i = next(ids)
        await ws.send_str(json.dumps({"id": i, "method": method, "params": params}))
        while i not in results:
            msg = json.loads((await asyncio.wait_for(ws.receive(), 30)).data)
            if "id" in msg:
                results[msg["id"]] = msg
            else:
                events.append(msg)
        msg = results.pop(i)
        if "error" in msg:
            raise RuntimeError(f"{method}: {msg['error']}")
        return msg["result"]

    async def until(event: str) -> None:
        while not any(e["method"] == event for e in events):
            msg = json.loads((await asyncio.wait_for(ws.receive(), 30)).data)
            (results.__setitem__(msg["id"], msg) if "id" in msg else events.append(msg))

    for domain in ("Page", "Runtime", "Log", "Network"):
        await call(f"{domain}.enable")
    await call("Page.navigate", url=page.resolve().as_uri())
    await until("Page.loadEventFired")
    info = (await call("Runtime.evaluate", expression=_INSPECT, returnByValue=True,
                       awaitPromise=True))["result"]["value"]
    shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                      clip={"x": 0, "y": 0, "width": 1280,
                            "height": min(int(info["height"]), 6000), "scale": 1})
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    info["console_errors"] = [
        e["params"] for e in events
        if e["method"] == "Runtime.exceptionThrown"
        or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
        or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    info["requests"] = [e["params"]["request"]["url"] for e in events
                        if e["method"] == "Network.requestWillBeSent"]
    return info


def _check(info: dict[str, Any], page: Path, operations: set[str]) -> None:
    assert info["console_errors"] == []
    assert info["imgs"], "the report has no images"
    for img in info["imgs"]:
        assert img["complete"] and img["w"] > 0 and img["h"] > 0, f"image not decoded: {img}"
        assert img["data"], f"image not inline: {img}"
    assert {t["op"] for t in info["tables"]} == operations
    for t in info["tables"]:
        # target + 10 metrics, + the load generator's CPU when the run measured it
        assert t["rows"] >= 1 and t["cols"] in (11, 12), t
    # the article's five, the three the policy variants decide, event sourcing's three
    assert info["claims"] == 11
    assert info["findings"] >= 1
    # The page fetched nothing but itself: no fonts, scripts or styles from anywhere.
    assert [u for u in info["requests"] if not u.startswith("data:")] == [page.resolve().as_uri()]
    assert info["overflow"] == [], "content wider than its box"
    assert info["pageWidth"] <= info["innerWidth"], "the page scrolls sideways"


@pytest.fixture(scope="session")
def real_report(tmp_path_factory) -> Path:
    run = real_run(tmp_path_factory.getbasetemp() / "report-runs", "one-rep")
    return write_report(run)


@pytest.fixture
def partial_report(tmp_path_factory, tmp_path: Path) -> Path:
    run = real_run(tmp_path_factory.getbasetemp() / "report-runs", "one-rep")
    return write_report(partial_copy(run, tmp_path))


# What a rendered figure's column means in summary.csv (results/README.md), by its header.
SUMMARY_COLUMN = {"throughput": "throughput_rps", "latency p50": "latency_p50_ms",
                  "latency p90": "latency_p90_ms", "latency p99": "latency_p99_ms",
                  "latency p99.9": "latency_p999_ms", "latency max": "latency_max_ms",
                  "service p99": "service_p99_ms"}


def _rendered_number(text: str) -> tuple[float, float]:
    """A figure as the page shows it ('1,234', '12.3', '0.456') and half its last digit:
    the rounding any figure shown that way may carry."""
    digits = text.replace(",", "")
    decimals = len(digits.partition(".")[2])
    return float(digits), 0.5 * 10 ** -decimals


def test_report_opens_clean_in_chromium(real_report: Path) -> None:
    shot = ARTIFACTS / "report-real-run.png"
    with Chromium() as chromium:
        info = inspect(chromium, real_report, shot)
    _check(info, real_report, {"get", "list", "create", "all"})
    assert shot.stat().st_size > 10_000
    run_dir = real_report.parent
    assert info["title"] == f"commbench report: quick ({run_dir.name})"
    assert len(info["imgs"]) == len(list((run_dir / "report" / "plots").glob("*.svg"))) == 6
    assert all(img["alt"] for img in info["imgs"])
    # Every latency and throughput figure the reader sees equals summary.csv's, read
    # independently of the report code (one repetition: the figure is the row itself).
    summary = pd.read_csv(run_dir / "summary.csv").set_index(["target", "operation"])
    compared = 0
    for table in info["figures"]:
        for row in table["rows"]:
            target = row[0]
            for header, shown in zip(table["head"][1:], row[1:], strict=True):
                if header not in SUMMARY_COLUMN:
                    continue
                value, rounding = _rendered_number(shown)
                expected = summary.loc[(target, table["op"]), SUMMARY_COLUMN[header]]
                assert abs(value - expected) <= rounding + 1e-9, \
                    (target, table["op"], header, shown, expected)
                compared += 1
    assert compared == 4 * 2 * len(SUMMARY_COLUMN)  # operations × targets × columns


def test_report_of_partial_run_shows_its_warning(partial_report: Path) -> None:
    shot = ARTIFACTS / "report-partial-run.png"
    with Chromium() as chromium:
        info = inspect(chromium, partial_report, shot)
    assert any("partial run" in w for w in info["warnings"])
    assert info["console_errors"] == []
    assert info["imgs"], "the partial report has no images"
    assert all(img["complete"] and img["w"] > 0 and img["h"] > 0 for img in info["imgs"])
    assert {row[0] for t in info["figures"] for row in t["rows"]} == {"rest"}  # what it kept
