"""The browser-test rig and the console's JS bundles, in a real headless Chromium.

The live server is reached as the console's tests will reach it. The bundles are tested on a
small site the test serves itself (Playwright answers its requests, no files written) under the
strict Content-Security-Policy the console is meant to send: every chart kind draws the numbers of
its spec, and htmx sends the CSRF token, asks before a data-confirm form, auto-submits filters.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest

STATIC = Path(__file__).resolve().parent.parent / "decision_server" / "console" / "static"
SITE = "http://console.test"  # never resolved: page.route answers every request to it
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
STYLE = """
body { font-family: sans-serif; margin: 16px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); gap: 16px; }
.chart { height: 280px; border: 1px solid #ddd; }
"""

SPECS = {
    "bar": {
        "kind": "bar",
        "title": "Customers by stage",
        "categories": ["new", "growth", "mature", "at_risk", "win_back"],
        "series": [{"name": "customers", "values": [120, 340, 560, 210, 90]}],
    },
    "bar-stacked": {
        "kind": "bar",
        "horizontal": True,
        "stacked": True,
        "format": "percent",
        "categories": ["app", "sms", "web"],
        "series": [{"name": "accepted", "values": [0.3, 0.12, 0.2]}, {"name": "ignored", "values": [0.7, 0.88, 0.8]}],
    },
    "line": {
        "kind": "line",
        "categories": ["2026-05", "2026-06", "2026-07", "2026-08", "2026-09"],
        "series": [
            {"name": "earned", "values": [1200, 1500, 1400, 1900, 2100]},
            {"name": "redeemed", "values": [300, 500, 800, 700, 1200]},
        ],
        "y_name": "points",
    },
    "pie": {
        "kind": "pie",
        "items": [{"name": "Bronze", "value": 700}, {"name": "Silver", "value": 220}, {"name": "Gold", "value": 80}],
    },
    "heatmap": {
        "kind": "heatmap",
        "x": ["new", "growth", "win_back"],
        "y": ["new", "growth", "win_back"],
        "cells": [[0, 0, 50], [1, 0, 30], [1, 1, 80], [2, 1, 12], [0, 2, 3], [2, 2, 40]],
        "cell_link": "/moved?from={y}&to={x}",
        "x_name": "to",
        "y_name": "from",
    },
    "histogram": {
        "kind": "histogram",
        "bins": [{"lo": i / 10, "hi": (i + 1) / 10, "count": c} for i, c in enumerate([5, 12, 30, 55, 80, 70, 40, 22, 9, 3])],
        "marks": [{"value": 0.35, "label": "low"}, {"value": 0.7, "label": "high"}],
    },
    "funnel": {
        "kind": "funnel",
        "stages": [
            {"name": "awareness", "value": 1000},
            {"name": "consideration", "value": 600},
            {"name": "purchase", "value": 250},
        ],
    },
    "sparkline": {"kind": "sparkline", "values": [3, 5, 4, 8, 7, 9, 12]},
    "empty": {"kind": "pie", "items": [], "empty_text": "No members yet"},
}


def chart_html(name: str, spec: dict, tag: str = "div") -> str:
    """Return the markup a template writes for one chart: the element and its spec as JSON."""
    data = json.dumps(spec).replace("</", "<\\/")
    css = ' class="chart"' if tag == "div" else ""
    return f'<{tag} id="chart-{name}"{css} data-chart data-spec="spec-{name}"></{tag}><script type="application/json" id="spec-{name}">{data}</script>'


def page_html(body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="csrf-token" content="token-123">'
        '<link rel="stylesheet" href="/static/rig.css"><script src="/static/console.js" defer></script>'
        f'<script src="/static/charts.js" defer></script></head><body>{body}</body></html>'
    )


GALLERY = page_html(
    '<div class="charts">'
    + "".join(chart_html(n, s) for n, s in SPECS.items() if n != "sparkline")
    + "</div>"
    + '<table><tr><td>Segment sizes</td><td id="spark-cell">'
    + chart_html("sparkline", SPECS["sparkline"], tag="span")
    + "</td></tr></table>"
    + chart_html("broken", {"kind": "radar"})
)

FORMS = page_html(
    '<button id="post" hx-post="/echo" hx-target="#out">post</button><div id="out"></div>'
    '<form id="danger" method="post" action="/echo" hx-post="/echo" hx-target="#out" data-confirm="Really delete?">'
    '<button id="delete">delete</button></form>'
    '<form id="filters" method="get" action="/filtered" data-autosubmit><select name="stage">'
    '<option value="new">new</option><option value="growth">growth</option></select><button>Apply</button></form>'
    '<button id="load" hx-get="/fragment" hx-target="#slot">load chart</button><div id="slot"></div>'
)


@pytest.fixture
def site(page):
    """Serve GALLERY at /, FORMS at /forms and the bundles at /static/, with the CSP; collect requests and console errors."""
    seen = []

    def answer(route, request):
        seen.append(request)
        path = urlsplit(request.url).path
        html = {"/": GALLERY, "/forms": FORMS, "/filtered": page_html("<p>filtered</p>"), "/moved": page_html("<p>moved</p>")}
        headers = {"Content-Security-Policy": CSP}
        if path in html:
            route.fulfill(body=html[path], content_type="text/html", headers=headers)
        elif path == "/echo":
            route.fulfill(body=f"<p id='echo'>{request.method}</p>", content_type="text/html", headers=headers)
        elif path == "/fragment":
            route.fulfill(body=chart_html("late", SPECS["bar"]), content_type="text/html", headers=headers)
        elif path == "/static/rig.css":
            route.fulfill(body=STYLE, content_type="text/css", headers=headers)
        elif path.startswith("/static/"):
            route.fulfill(path=STATIC / path.removeprefix("/static/"), content_type="text/javascript", headers=headers)
        else:
            route.fulfill(status=404, body="not found")

    page.route(f"{SITE}/**", answer)
    problems = []
    page.on("console", lambda message: message.type in ("error", "warning") and problems.append(message.text))
    page.on("pageerror", lambda error: problems.append(str(error)))
    return SimpleNamespace(requests=seen, problems=problems)


def test_live_server_serves_the_demo_base_to_the_browser(page, live_server):
    page.goto(live_server.url("/health"))
    assert json.loads(page.inner_text("body")) == {"status": "ok"}
    for role, key in live_server.keys.items():
        answer = page.request.get(live_server.url("/api/v1/customers/DEMO-000001"), headers={"Authorization": f"Bearer {key}"})
        assert answer.status in (200, 403), (role, answer.status)  # every key is valid; its role decides
    answer = page.request.get(
        live_server.url("/api/v1/customers/DEMO-000001"), headers={"Authorization": f"Bearer {live_server.keys['analyst']}"}
    )
    assert answer.ok and answer.json()["id"] == "DEMO-000001"


def drawn(page, name):
    """Return the option ECharts holds for a chart element (what it actually draws)."""
    return page.evaluate(
        "(id) => { const o = window.ConsoleCharts.instances.get(document.getElementById(id)).getOption();"
        " return {series: o.series.map((s) => ({type: s.type, data: s.data, markLine: s.markLine && s.markLine.data}))}; }",
        f"chart-{name}",
    )


def test_every_chart_kind_draws_its_spec_under_a_strict_csp(page, site, screenshot):
    page.goto(f"{SITE}/")
    page.wait_for_function("document.querySelectorAll('[data-chart]:not([data-rendered])').length === 0")
    registry = page.evaluate("window.consoleCharts")
    assert registry == {f"chart-{n}": {"kind": s["kind"], "spec": s} for n, s in SPECS.items()}
    rendered = page.eval_on_selector_all("[data-chart]", "els => Object.fromEntries(els.map(e => [e.id, e.dataset.rendered]))")
    assert rendered == {**{f"chart-{n}": "true" for n in SPECS}, "chart-broken": "error"}
    assert "unknown chart kind" in page.get_attribute("#chart-broken", "data-error")
    assert page.get_attribute("#chart-empty", "data-empty") == "true"

    assert [s["data"] for s in drawn(page, "bar")["series"]] == [[120, 340, 560, 210, 90]]
    assert [s["data"] for s in drawn(page, "bar-stacked")["series"]] == [[0.3, 0.12, 0.2], [0.7, 0.88, 0.8]]
    assert [s["data"] for s in drawn(page, "line")["series"]] == [[1200, 1500, 1400, 1900, 2100], [300, 500, 800, 700, 1200]]
    assert [d["value"] for d in drawn(page, "pie")["series"][0]["data"]] == [700, 220, 80]
    assert drawn(page, "heatmap")["series"][0]["data"] == SPECS["heatmap"]["cells"]
    histogram = drawn(page, "histogram")["series"][0]
    assert [row[1] for row in histogram["data"]] == [b["count"] for b in SPECS["histogram"]["bins"]]
    assert [(m["xAxis"], m["name"]) for m in histogram["markLine"]] == [(0.35, "low"), (0.7, "high")]
    assert [d["value"] for d in drawn(page, "funnel")["series"][0]["data"]] == [1000, 600, 250]
    assert drawn(page, "sparkline")["series"][0]["data"] == SPECS["sparkline"]["values"]
    assert page.eval_on_selector("#chart-sparkline", "e => e.clientWidth > 0 && e.clientHeight > 0")

    screenshot(page, "rig-charts")
    for name in SPECS:
        page.locator(f"#chart-{name}").screenshot(path=str(screenshot.folder / f"rig-chart-{name}.png"))
    for name in ("bar", "heatmap", "funnel"):  # tooltips are drawn on the canvas: no inline style for the CSP to refuse
        page.hover(f"#chart-{name}")
        page.locator(f"#chart-{name}").screenshot(path=str(screenshot.folder / f"rig-tooltip-{name}.png"))
    assert [p for p in site.problems if "chart chart-broken" not in p] == []


def test_a_heatmap_cell_links_to_its_customers(page, site):
    page.goto(f"{SITE}/")
    page.wait_for_selector("#chart-heatmap[data-rendered=true]")
    x, y = page.evaluate(
        "() => window.ConsoleCharts.instances.get(document.getElementById('chart-heatmap')).convertToPixel({seriesIndex: 0}, [2, 1])"
    )
    box = page.locator("#chart-heatmap").bounding_box()
    with page.expect_navigation():
        page.mouse.click(box["x"] + x, box["y"] + y)
    assert parse_qs(urlsplit(page.url).query) == {"from": ["growth"], "to": ["win_back"]}


def test_charts_follow_htmx_swaps_and_leave_with_their_element(page, site):
    page.goto(f"{SITE}/forms")
    page.click("#load")
    page.wait_for_selector("#chart-late[data-rendered=true]")
    assert page.evaluate("window.consoleCharts['chart-late'].spec.series[0].values") == [120, 340, 560, 210, 90]
    page.evaluate("document.getElementById('slot').replaceChildren()")
    page.wait_for_function("!('chart-late' in window.consoleCharts) && window.ConsoleCharts.instances.size === 0")
    assert site.problems == []


def test_htmx_sends_the_csrf_token_and_data_confirm_asks_first(page, site):
    page.goto(f"{SITE}/forms")
    page.click("#post")
    page.wait_for_selector("#echo")
    [post] = [r for r in site.requests if r.method == "POST"]
    assert post.headers["x-csrf-token"] == "token-123"

    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#delete")
    page.wait_for_timeout(200)
    assert len([r for r in site.requests if r.method == "POST"]) == 1  # "no": nothing sent
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_request(f"{SITE}/echo"):
        page.click("#delete")
    assert site.problems == []


def test_data_autosubmit_submits_a_filter_form_on_change(page, site):
    page.goto(f"{SITE}/forms")
    assert page.evaluate("document.documentElement.classList.contains('js')")
    with page.expect_navigation():
        page.select_option("#filters select", "growth")
    assert urlsplit(page.url).path == "/filtered" and parse_qs(urlsplit(page.url).query) == {"stage": ["growth"]}
