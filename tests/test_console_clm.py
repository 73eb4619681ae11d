"""The lifecycle (CLM) and value (CVM) screens: their API endpoints, the pages over HTTP, and in a real browser.

Every number a chart shows is checked against the API's answer to the same question; the
browser tests click a heatmap cell and find the same number of customers who moved.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.request
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import sqlalchemy as sa

from decision_server.customers.records import CustomerRecord
from decision_server.db import utcnow
from decision_server.lifecycle import service as lifecycle
from tests.test_console import sign_in

STAGES = ["acquisition", "onboarding", "growth", "retention", "win_back", "churn_risk"]


def _buy(client, auth, customer: str, n: int, days_ago: float = 0):
    moment = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)).isoformat()
    body = {"external_id": f"{customer}-T{n}", "customer_id": customer, "occurred_at": moment, "amount": "25.00"}
    response = client.post("/api/v1/transactions", json=body, headers=auth("ingest"))
    assert response.status_code == 201, response.get_json()


@pytest.fixture
def movers(client, auth):
    """Three customers: two bought three times (growth), one once (onboarding); M-0 then set to win-back by hand."""
    for i in range(3):
        assert (
            client.post(
                "/api/v1/customers", json={"external_id": f"M-{i}", "first_name": f"Mo{i}"}, headers=auth("admin")
            ).status_code
            == 201
        )
        for n in range(3 if i < 2 else 1):
            _buy(client, auth, f"M-{i}", n, days_ago=20 - 5 * n)
    moved = client.post("/api/v1/customers/M-0/stage", json={"stage": "win_back", "reason": "lapsed VIP"}, headers=auth("editor"))
    assert moved.status_code == 200 and moved.get_json()["changed"], moved.get_json()
    return ["M-0", "M-1", "M-2"]


# --- the API the screens read ----------------------------------------------------------------


def test_stage_history_counts_back_from_today_through_the_transitions(client, auth, database, revision, movers):
    now = utcnow()
    assert client.post("/api/v1/customers", json={"external_id": "H-1"}, headers=auth("admin")).status_code == 201
    with database.connection(write=True) as conn:  # moves by hand at past times: retention 10 days ago, churn risk 5 days ago
        cid = conn.execute(sa.select(CustomerRecord.id).where(CustomerRecord.external_id == "H-1")).scalar_one()
        for stage, days in (("retention", 10), ("churn_risk", 5)):
            lifecycle.set_stage(
                conn, cid, stage, revision=revision, actor="test", reason="history", now=now - dt.timedelta(days=days)
            )
    query = {"since": (now - dt.timedelta(days=20)).isoformat(), "until": now.isoformat(), "interval": "day"}
    answer = client.get("/api/v1/lifecycle/statistics/history?" + urlencode(query), headers=auth("analyst"))
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert [s["stage"] for s in body["stages"]] == STAGES and len(body["periods"]) == 21
    counts = {s["stage"]: s["customers"] for s in body["stages"]}
    today = {
        s["stage"]: s["customers"]
        for s in client.get("/api/v1/lifecycle/statistics", headers=auth("analyst")).get_json()["stages"]
    }
    assert {stage: values[-1] for stage, values in counts.items()} == today  # the last point is now
    # The movers' events were handled now, so before today only H-1 had a stage.
    for i, period in enumerate(body["periods"][:-1]):
        end = dt.datetime.fromisoformat(period["end"])
        expected = (
            "churn_risk" if end > now - dt.timedelta(days=5) else "retention" if end > now - dt.timedelta(days=10) else None
        )
        assert {stage: values[i] for stage, values in counts.items() if values[i]} == ({expected: 1} if expected else {}), period
    assert (
        sum(p["moves"] for p in body["periods"]) == 2 + 5 + 1
    )  # H-1's two, the movers' five by events (2 + 2 + 1), M-0's by hand


def test_stage_history_checks_its_query(client, auth):
    assert client.get("/api/v1/lifecycle/statistics/history", headers=auth("analyst")).status_code == 200
    assert client.get("/api/v1/lifecycle/statistics/history", headers=auth("channel")).status_code == 403
    bad = client.get("/api/v1/lifecycle/statistics/history?since=2026-02-01&until=2026-01-01", headers=auth("analyst"))
    assert bad.status_code == 422 and bad.get_json()["code"] == "period_invalid" and "since" in bad.get_json()["errors"]
    long = client.get(
        "/api/v1/lifecycle/statistics/history?since=2020-01-01&until=2026-01-01&interval=day", headers=auth("analyst")
    )
    assert long.status_code == 422 and long.get_json()["code"] == "period_too_long"
    unknown = client.get("/api/v1/lifecycle/statistics/history?interval=year", headers=auth("analyst"))
    assert unknown.status_code == 422 and "query.interval" in unknown.get_json()["errors"]


def test_transitions_filter_first_stages(client, auth, movers):
    first = client.get("/api/v1/lifecycle/transitions?first=true&limit=100", headers=auth("analyst")).get_json()["items"]
    assert sorted(t["customer_id"] for t in first) == movers and all(t["from_stage"] is None for t in first)


def test_value_thresholds_are_read_from_the_serving_rules(client, auth, rules_dir):
    answer = client.get("/api/v1/value/thresholds", headers=auth("analyst"))
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["cuts"] == [40, 70] and body["range"] == [0, 100] and body["input"] == "value_score"
    assert [(s["segment"], s["from"], s["to"]) for s in body["segments"]] == [
        ("low", 0, 40),
        ("medium", 40, 70),
        ("high", 70, 100),
    ]
    assert client.get("/api/v1/value/thresholds", headers=auth("channel")).status_code == 403


# --- the pages over HTTP --------------------------------------------------------------------


def _spec(html: str, chart: str) -> dict:
    found = re.search(rf'<script type="application/json" id="{chart}-spec">(.*?)</script>', html, re.S)
    assert found, f"no chart {chart} on the page"
    return json.loads(found.group(1))


def test_the_pages_render_on_an_empty_database(client, keys):
    sign_in(client, keys["analyst"])
    html = client.get("/console/lifecycle").get_data(as_text=True)
    assert _spec(html, "transition-matrix")["cells"] == [] and _spec(html, "first-stages")["categories"] == []
    assert "No customer changed stage in this period" in html
    assert _spec(html, "stages-now")["series"][0]["values"] == [0] * len(STAGES)
    html = client.get("/console/value").get_data(as_text=True)
    assert _spec(html, "value-histogram")["bins"] == [] and "No history of value segments is kept" in html
    assert client.get("/console/lifecycle/movers?from=growth&to=win_back").status_code == 200


def test_the_lifecycle_page_shows_the_api_numbers_and_links_a_cell_to_its_movers(client, keys, auth, movers):
    sign_in(client, keys["analyst"])
    html = client.get("/console/lifecycle").get_data(as_text=True)
    matrix = _spec(html, "transition-matrix")
    api = client.get(matrix["source"], headers=auth("analyst")).get_json()
    cells = {(matrix["y"][yi], matrix["x"][xi]): n for xi, yi, n in matrix["cells"]}
    assert (
        cells
        == {(m["from"], m["to"]): m["count"] for m in api["matrix"] if m["from"]}
        == {("onboarding", "growth"): 2, ("growth", "win_back"): 1}
    )
    firsts = _spec(html, "first-stages")
    assert firsts["categories"] == STAGES and firsts["series"][0]["values"] == [3 if s == "onboarding" else 0 for s in STAGES]
    assert [m["count"] for m in api["matrix"] if m["from"] is None] == [3]
    now = _spec(html, "stages-now")
    assert now["series"][0]["values"] == [s["customers"] for s in api["stages"]]
    history = _spec(html, "stages-over-time")
    past = client.get(history["source"], headers=auth("analyst")).get_json()
    assert history["series"] == [{"name": s["stage"], "values": s["customers"]} for s in past["stages"]]
    assert "Win back discount" in html and "Reactivation offer" in html  # the actions of win-back

    link = matrix["cell_link"].replace("{y}", "growth").replace("{x}", "win_back")
    page = client.get(link).get_data(as_text=True)
    assert 'data-count="1"' in page and 'href="/console/customers/M-0"' in page and "Mo0" in page
    assert "M-1" not in page
    first = client.get(matrix["cell_link"].replace("{y}", "(none)").replace("{x}", "onboarding")).get_data(as_text=True)
    assert 'data-count="3"' in first  # everyone's first stage was onboarding (first purchase)


def test_the_period_filter_changes_the_matrix(client, keys, movers):
    sign_in(client, keys["analyst"])
    now = utcnow()
    earlier = {
        "since": (now - dt.timedelta(days=60)).date().isoformat(),
        "until": (now - dt.timedelta(days=30)).date().isoformat(),
    }
    html = client.get("/console/lifecycle?" + urlencode(earlier)).get_data(as_text=True)
    assert _spec(html, "transition-matrix")["cells"] == [] and _spec(html, "first-stages")["categories"] == []
    assert parse_qs(urlsplit(_spec(html, "stages-over-time")["source"]).query)["until"][0].startswith(earlier["until"])


@pytest.mark.parametrize(
    "query,field",
    [
        ("since=yesterday", "query.since"),
        ("since=2026-02-01&until=2026-01-01", "query.until"),
        ("until=2026-13-01", "query.until"),
    ],
)
def test_a_bad_filter_shows_the_console_error_page(client, keys, query, field):
    sign_in(client, keys["analyst"])
    for path in ("/console/lifecycle", "/console/lifecycle/movers"):
        response = client.get(f"{path}?{query}")
        assert response.status_code == 422 and response.mimetype == "text/html", (path, response.status_code)
        assert field in response.get_data(as_text=True)
    assert client.get("/console/lifecycle/movers?before=0").status_code == 422


def test_the_value_page_shows_the_api_numbers_and_the_thresholds(client, keys, auth, movers):
    sign_in(client, keys["analyst"])
    html = client.get("/console/value").get_data(as_text=True)
    stats = client.get("/api/v1/value/statistics", headers=auth("analyst")).get_json()
    histogram = _spec(html, "value-histogram")
    assert [b["count"] for b in histogram["bins"]] == [b["customers"] for b in stats["histogram"]]
    assert sum(b["count"] for b in histogram["bins"]) == 3
    assert [m["value"] for m in histogram["marks"]] == client.get("/api/v1/value/thresholds", headers=auth("analyst")).get_json()[
        "cuts"
    ]
    pie = _spec(html, "value-segments")
    assert pie["items"] == [{"name": s["segment"], "value": s["customers"]} for s in stats["segments"]]
    offers = client.get("/api/v1/value/offers", headers=auth("analyst")).get_json()["segments"]
    for segment in offers:
        assert f'id="offers-{segment["segment"]}"' in html


# --- in a real browser, on the demo base ----------------------------------------------------


def _api(live_server, path: str, role: str = "analyst", body: dict | None = None) -> dict:
    """Ask the live server's API as `role` (the numbers a chart must equal)."""
    request = urllib.request.Request(
        live_server.url(path),
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {live_server.keys[role]}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def _sign_in(page, live_server, role: str = "analyst") -> None:
    page.goto(live_server.url("/console/sign-in"))
    page.fill("#api_key", live_server.keys[role])
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert urlsplit(page.url).path == "/console/overview"


def _charts(page) -> dict:
    page.wait_for_function("document.querySelectorAll('[data-chart]:not([data-rendered])').length === 0")
    assert page.eval_on_selector_all("[data-chart]", "els => els.map((e) => e.dataset.rendered)") == ["true"] * len(
        page.query_selector_all("[data-chart]")
    )
    return page.evaluate("window.consoleCharts")


def _move_to_win_back(live_server, wanted: int = 3) -> list[str]:
    """Move some growth customers of the demo base to win-back by hand (the demo's history has no such move yet)."""
    moved = []
    page = _api(live_server, "/api/v1/lifecycle/transitions?to_stage=growth&limit=200")
    for item in page["items"]:
        customer = item["customer_id"]
        if customer in moved or _api(live_server, f"/api/v1/customers/{customer}")["state"]["stage"] != "growth":
            continue
        body = {"stage": "win_back", "reason": "lapsed: browser test"}
        assert _api(live_server, f"/api/v1/customers/{customer}/stage", "editor", body)["changed"]
        moved.append(customer)
        if len(moved) == wanted:
            break
    assert len(moved) == wanted, "the demo base has too few growth customers"
    return moved


def test_lifecycle_screen_in_the_browser(page, live_server, screenshot):
    moved = _move_to_win_back(live_server)
    _sign_in(page, live_server)
    page.click(".sidebar >> text=Lifecycle")
    assert urlsplit(page.url).path == "/console/lifecycle"
    charts = _charts(page)

    matrix = charts["transition-matrix"]["spec"]
    api = _api(live_server, matrix["source"])
    cells = {(matrix["y"][yi], matrix["x"][xi]): n for xi, yi, n in matrix["cells"]}
    assert cells == {(m["from"], m["to"]): m["count"] for m in api["matrix"] if m["from"]}
    firsts = charts["first-stages"]["spec"]
    assert sum(firsts["series"][0]["values"]) == sum(m["count"] for m in api["matrix"] if m["from"] is None)
    assert charts["stages-now"]["spec"]["series"][0]["values"] == [s["customers"] for s in api["stages"]]
    assert charts["stages-now"]["spec"]["categories"] == [s["stage"] for s in api["stages"]]
    history = charts["stages-over-time"]["spec"]
    past = _api(live_server, history["source"])
    assert history["series"] == [{"name": s["stage"], "values": s["customers"]} for s in past["stages"]]
    assert [s["values"][-1] for s in history["series"]] == [s["customers"] for s in api["stages"]]
    screenshot(page, "console-lifecycle")

    # "How many moved from growth to win-back, and who": one click on the heatmap's cell.
    count = cells[("growth", "win_back")]
    assert count >= len(moved)
    xi, yi = matrix["x"].index("win_back"), matrix["y"].index("growth")
    page.locator("#transition-matrix").scroll_into_view_if_needed()
    x, y = page.evaluate(
        "([xi, yi]) => window.ConsoleCharts.instances.get(document.getElementById('transition-matrix'))"
        ".convertToPixel({seriesIndex: 0}, [xi, yi])",
        [xi, yi],
    )
    box = page.locator("#transition-matrix").bounding_box()
    with page.expect_navigation():
        page.mouse.click(box["x"] + x, box["y"] + y)
    query = parse_qs(urlsplit(page.url).query)
    assert urlsplit(page.url).path == "/console/lifecycle/movers"
    assert query["from"] == ["growth"] and query["to"] == ["win_back"] and query["since"] == [api["since"].replace("+00:00", "Z")]
    assert int(page.get_attribute("#movers-total .kpi-value", "data-count")) == count
    shown = page.eval_on_selector_all("#movers tbody tr td:first-child a", "links => links.map((a) => a.textContent)")
    assert len(shown) == min(count, 25) and set(moved) <= set(shown)
    screenshot(page, "console-lifecycle-movers")
    with page.expect_navigation():
        page.click(f"#movers a:text-is('{moved[0]}')")
    assert urlsplit(page.url).path == f"/console/customers/{moved[0]}"

    # Another period: the URL carries it, the numbers follow.
    page.go_back()
    page.go_back()
    today = utcnow().date()
    page.fill("input[name=since]", (today - dt.timedelta(days=60)).isoformat())
    page.fill("input[name=until]", (today - dt.timedelta(days=30)).isoformat())
    with page.expect_navigation():
        page.click("#period-filter button[type=submit]")
    query = parse_qs(urlsplit(page.url).query)
    assert query == {
        "since": [(today - dt.timedelta(days=60)).isoformat()],
        "until": [(today - dt.timedelta(days=30)).isoformat()],
    }
    charts = _charts(page)
    earlier = _api(live_server, "/api/v1/lifecycle/statistics?" + urlencode({k: v[0] for k, v in query.items()}))
    assert earlier["matrix"] == [] and charts["transition-matrix"]["spec"]["cells"] == []
    assert page.get_attribute("#transition-matrix", "data-empty") == "true"
    assert page.inner_text("#kpi-moves .kpi-value") == "0"
    with page.expect_navigation():
        page.click(".presets >> text=Last 7 days")
    assert parse_qs(urlsplit(page.url).query)["since"] == [(today - dt.timedelta(days=6)).isoformat()]
    assert page.get_attribute(".presets .chip.on", "href").endswith(f"until={(today + dt.timedelta(days=1)).isoformat()}")
    assert int(page.inner_text("#kpi-moves .kpi-value").replace(",", "")) == sum(m["count"] for m in api["matrix"] if m["from"])


def test_value_screen_in_the_browser(page, live_server, screenshot):
    _sign_in(page, live_server)
    page.click(".sidebar >> text=Value")
    charts = _charts(page)
    stats = _api(live_server, "/api/v1/value/statistics")
    thresholds = _api(live_server, "/api/v1/value/thresholds")
    histogram = charts["value-histogram"]["spec"]
    assert [(b["lo"], b["hi"], b["count"]) for b in histogram["bins"]] == [
        (b["from"], b["to"], b["customers"]) for b in stats["histogram"]
    ]
    assert sum(b["count"] for b in histogram["bins"]) > 0
    assert [m["value"] for m in histogram["marks"]] == thresholds["cuts"] == [40, 70]
    drawn = page.evaluate(
        "() => window.ConsoleCharts.instances.get(document.getElementById('value-histogram')).getOption().series[0].markLine.data"
        ".map((m) => m.xAxis)"
    )
    assert drawn == [40, 70]
    assert charts["value-segments"]["spec"]["items"] == [
        {"name": s["segment"], "value": s["customers"]} for s in stats["segments"]
    ]
    offers = _api(live_server, "/api/v1/value/offers")["segments"]
    for segment in offers:
        listed = page.eval_on_selector_all(f"#offers-{segment['segment']} code", "codes => codes.map((c) => c.textContent)")
        assert listed == [o["code"] for o in segment["offers"]]
    screenshot(page, "console-value")
