"""The Programme screens (loyalty; offers and decisions) and the endpoints behind their charts.

Over HTTP on both databases: the pages on an empty base (designed empty states), filters checked
(a bad date is the console's 422 page), the endpoints' numbers on a small base of our own. In a
real Chromium on the demo base: each chart's numbers equal the API's answer, and change with the period.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.request
from urllib.parse import urlencode

import pytest

from decision_server.db import utcnow
from tests.test_console import sign_in

PAGES = ("/console/loyalty", "/console/offers")


@pytest.mark.parametrize("path", PAGES)
def test_a_programme_page_on_an_empty_base_says_what_would_fill_it(client, keys, path):
    sign_in(client, keys["analyst"])
    response = client.get(path)
    html = response.get_data(as_text=True)
    assert response.status_code == 200, html[:500]
    assert 'class="empty"' in html and "data-chart" not in html.split('id="period"')[1].split("</form>")[0]
    assert re.search(r'name="since" value="\d{4}-\d\d-\d\d"', html) and re.search(r'name="until" value="\d{4}-\d\d-\d\d"', html)


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize(
    "query,field",
    [("since=yesterday", "since"), ("until=2026-13-45", "until"), ("since=2026-03-01&until=2026-02-01", "since")],
)
def test_a_bad_filter_is_the_console_422_page_naming_the_field(client, keys, path, query, field):
    sign_in(client, keys["analyst"])
    response = client.get(f"{path}?{query}")
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and response.mimetype == "text/html", html[:500]
    assert "Check the form" in html and field in html


def test_bad_screen_specific_filters_are_refused_too(client, keys):
    sign_in(client, keys["analyst"])
    assert client.get("/console/loyalty?interval=month").status_code == 422
    assert client.get("/console/loyalty?since=2000-01-01&until=2026-01-01").status_code == 422  # 9,497 days: too many
    assert client.get("/console/loyalty?since=2000-01-01&until=2026-01-01&interval=week").status_code == 422
    assert client.get("/console/offers?sample=0").status_code == 422
    assert client.get("/console/offers?sample=2000&since=").status_code == 200  # a cleared input is no filter


def test_a_channel_key_opens_neither_screen(client, keys):
    sign_in(client, keys["channel"])
    for path in PAGES:
        assert client.get(path).status_code == 403


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/loyalty/statistics/points",
        "/api/v1/decisions/statistics/offers",
        "/api/v1/decisions/statistics/daily",
        "/api/v1/decisions/statistics/removals",
    ],
)
def test_the_new_endpoints_answer_an_empty_base_and_check_the_period(client, auth, path):
    response = client.get(path, headers=auth("analyst"))
    assert response.status_code == 200, response.get_json()
    assert client.get(path, headers=auth("channel")).status_code == 403
    bad = client.get(path + "?since=2026-03-01&until=2026-02-01", headers=auth("analyst"))
    assert bad.status_code == 422 and bad.get_json()["code"] == "period_invalid" and "since" in bad.get_json()["errors"]
    long = client.get(path + "?since=1990-01-01&until=2026-01-01", headers=auth("analyst"))
    assert long.status_code in (200, 422)  # removals and offers read any span; per-day series refuse 400+ days
    if "daily" in path or "points" in path:
        assert long.status_code == 422 and long.get_json()["code"] == "period_too_long"


def _offer(client, auth, code, channels=("app", "sms")):
    body = {
        "code": code,
        "name": f"Offer {code}",
        "category": "loyalty",
        "business_value": 2,
        "treatments": {c: ({"text": "Hi"} if c == "sms" else {"title": code, "body": "Hello"}) for c in channels},
    }
    response = client.post("/api/v1/offers", json=body, headers=auth("admin"))
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def test_offer_daily_and_removal_statistics_count_the_log(client, auth):
    for i in range(3):
        assert client.post("/api/v1/customers", json={"external_id": f"C{i}"}, headers=auth("admin")).status_code == 201
    _offer(client, auth, "SMS_ONLY", channels=("sms",))
    both = _offer(client, auth, "BOTH")
    answers = []
    for i, channel in enumerate(["call_centre", "app", "app"]):  # no offer has a call-centre treatment
        made = client.post("/api/v1/decisions", json={"customer_id": f"C{i}", "channel": channel}, headers=auth("channel"))
        assert made.status_code == 201, made.get_json()
        answers.append(made.get_json())
    first = answers[1]  # app: SMS_ONLY has no app treatment, so the catalog removed it
    assert [a["offer"]["code"] for a in first["actions"]] == ["BOTH"], first["explanation"]
    accepted = client.post(
        f"/api/v1/decisions/{first['decision_id']}/responses", json={"response": "accepted"}, headers=auth("channel")
    )
    assert accepted.status_code == 201

    offers = client.get("/api/v1/decisions/statistics/offers", headers=auth("analyst")).get_json()["items"]
    made = {o["code"]: o for o in offers}
    assert made["BOTH"]["offer_id"] == both and made["BOTH"]["name"] == "Offer BOTH" and made["BOTH"]["category"] == "loyalty"
    assert [(o["offer_id"], o["actions"], o["accepted"], o["acceptance_rate"]) for o in offers] == [(both, 2, 1, 0.5)]

    daily = client.get("/api/v1/decisions/statistics/daily", headers=auth("analyst")).get_json()
    today = utcnow().date().isoformat()
    assert daily["days"][-1] == today and len(daily["days"]) == 14
    assert daily["decisions"][-1] == 3 and sum(daily["decisions"]) == 3
    app = next(c for c in daily["channels"] if c["channel"] == "app")
    assert app["decisions"][-1] == 2 and app["actions"][-1] == 2 and app["accepted"][-1] == 1
    assert app["acceptance_rate"][-1] == 0.5 and app["acceptance_rate"][0] is None
    assert daily["latency_p95_us"][-1] > 0 and daily["latency_p50_us"][0] is None

    removals = client.get("/api/v1/decisions/statistics/removals", headers=auth("analyst")).get_json()
    assert removals["decisions"] == 3 and removals["candidates"] == 6 and removals["sample_limit"] == 1000
    rule = next(r for r in removals["rules"] if r["rule"] == "no_treatment")
    assert rule["ruleset"] == "catalog" and rule["removals"] == 4 and rule["decisions"] == 3
    assert rule["offers"] == [{"code": "SMS_ONLY", "removals": 3}, {"code": "BOTH", "removals": 1}]
    assert removals["removed"] == 4 and rule["share"] == round(4 / 6, 6)
    sampled = client.get("/api/v1/decisions/statistics/removals?sample=1", headers=auth("analyst")).get_json()
    assert sampled["decisions"] == 1 and sampled["candidates"] == 2

    yesterday = (utcnow() - dt.timedelta(days=1)).date().isoformat()
    before = client.get(f"/api/v1/decisions/statistics/offers?until={yesterday}", headers=auth("analyst")).get_json()
    assert before["items"] == []


def test_points_over_time_by_day_and_week(client, auth):
    assert client.post("/api/v1/customers", json={"external_id": "M1"}, headers=auth("admin")).status_code == 201
    enrolled = client.post("/api/v1/loyalty/members/M1/enroll", json={}, headers=auth("admin"))
    assert enrolled.status_code in (200, 201), enrolled.get_json()
    earned = client.post(
        "/api/v1/loyalty/members/M1/adjust",
        json={"points": 120, "reason": "goodwill", "idempotency_key": "k1"},
        headers=auth("admin"),
    )
    assert earned.status_code == 201, earned.get_json()
    answer = client.get("/api/v1/loyalty/statistics/points", headers=auth("analyst")).get_json()
    assert len(answer["periods"]) == 30 and answer["periods"][-1] == utcnow().date().isoformat()
    assert answer["totals"] == {"earned": 0, "redeemed": 0, "expired": 0}  # an adjustment is not earned by a purchase
    weekly = client.get("/api/v1/loyalty/statistics/points?interval=week", headers=auth("analyst")).get_json()
    assert all(dt.date.fromisoformat(p).weekday() == 0 for p in weekly["periods"])
    statistics = client.get("/api/v1/loyalty/statistics?until=2026-01-01&since=2025-12-01", headers=auth("analyst")).get_json()
    assert statistics["until"].startswith("2026-01-01") and statistics["members"] == 1


# --- in a real Chromium, on the demo base -------------------------------------------------------


def api(live_server, path: str, **params) -> dict:
    """GET an API answer with the analyst's key, as any client would."""
    url = live_server.url(path) + ("?" + urlencode(params) if params else "")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {live_server.keys['analyst']}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture
def analyst(page, live_server):
    """A page signed in through the form with the analyst's key."""
    page.goto(live_server.url("/console/sign-in"))
    page.fill("input[name=api_key]", live_server.keys["analyst"])
    with page.expect_navigation():
        page.click("button[type=submit]")
    return page


def charts(page) -> dict:
    """Wait for every chart to be drawn; return window.consoleCharts (id → {kind, spec})."""
    page.wait_for_function("document.querySelectorAll('[data-chart]:not([data-rendered])').length === 0")
    assert page.eval_on_selector_all("[data-chart]", "els => els.every(e => e.dataset.rendered === 'true')")
    return page.evaluate("window.consoleCharts")


def period(page) -> dict:
    """The period the page shows, as its form holds it."""
    return {name: page.input_value(f"#period [name={name}]") for name in ("since", "until")}


def submit_period(page, **values):
    for name, value in values.items():
        if name == "interval":
            page.select_option("#period [name=interval]", value)
        else:
            page.fill(f"#period [name={name}]", value)
    with page.expect_navigation():
        page.click("#period button[type=submit]")


def _tier_cells(statistics: dict) -> list:
    tiers = [t["tier"] for t in sorted(statistics["by_tier"], key=lambda t: t["rank"])]
    moves: dict = {}
    for c in statistics["tier_changes"]:
        if c["from"] is not None:
            moves[(c["from"], c["to"])] = moves.get((c["from"], c["to"]), 0) + c["count"]
    return [[tiers.index(to), tiers.index(frm), n] for (frm, to), n in sorted(moves.items())]


def test_the_loyalty_screen_draws_the_apis_numbers_and_follows_the_period(analyst, live_server, screenshot):
    page = analyst
    page.goto(live_server.url("/console/loyalty"))
    drawn = charts(page)
    shown = period(page)
    statistics = api(live_server, "/api/v1/loyalty/statistics", **shown)
    points = api(live_server, "/api/v1/loyalty/statistics/points", **shown)
    assert statistics["members"] > 0 and points["totals"]["earned"] > 0  # the demo base has a programme

    members = drawn["members-by-tier"]["spec"]
    assert members["categories"] == [t["tier"] for t in statistics["by_tier"]]
    assert members["series"][0]["values"] == [t["members"] for t in statistics["by_tier"]]
    assert drawn["liability-by-tier"]["spec"]["series"][0]["values"] == [t["balance"] for t in statistics["by_tier"]]
    assert page.inner_text("#kpi-liability .kpi-value") == f"{statistics['points']['outstanding']:,}"
    line = drawn["points-over-time"]["spec"]
    assert line["categories"] == points["periods"] and len(line["categories"]) == 30
    assert [s["values"] for s in line["series"]] == [points["earned"], points["redeemed"], points["expired"]]
    assert page.inner_text("#kpi-earned .kpi-value") == f"{points['totals']['earned']:,}"
    if "tier-changes" in drawn:
        assert drawn["tier-changes"]["spec"]["cells"] == _tier_cells(statistics)
    else:
        assert _tier_cells(statistics) == []
    screenshot(page, "console-loyalty")

    since = (dt.date.fromisoformat(shown["until"]) - dt.timedelta(days=90)).isoformat()
    submit_period(page, since=since, interval="week")
    assert f"since={since}" in page.url and "interval=week" in page.url
    weekly = api(live_server, "/api/v1/loyalty/statistics/points", interval="week", **period(page))
    line = charts(page)["points-over-time"]["spec"]
    assert line["categories"] == weekly["periods"] and len(weekly["periods"]) in (13, 14, 15)
    assert line["series"][0]["values"] == weekly["earned"] and weekly["totals"]["earned"] > points["totals"]["earned"]
    assert page.inner_text("#kpi-earned .kpi-value") == f"{weekly['totals']['earned']:,}"
    page.go_back()
    assert charts(page)["points-over-time"]["spec"]["categories"] == points["periods"]  # the back button works


def test_the_offers_screen_draws_the_apis_numbers_and_follows_the_period(analyst, live_server, screenshot):
    page = analyst
    page.goto(live_server.url("/console/offers"))
    drawn = charts(page)
    shown = period(page)
    offers = api(live_server, "/api/v1/decisions/statistics/offers", **shown)["items"]
    daily = api(live_server, "/api/v1/decisions/statistics/daily", **shown)
    removals = api(live_server, "/api/v1/decisions/statistics/removals", **shown)
    totals = api(live_server, "/api/v1/decisions/statistics", **shown)
    assert totals["decisions"] > 0 and offers and removals["rules"]  # the demo's fortnight of traffic

    top = drawn["offer-decisions"]["spec"]
    assert top["categories"] == [o["code"] for o in offers[:12]]
    assert [s["values"] for s in top["series"]] == [[o["actions"] for o in offers[:12]], [o["accepted"] for o in offers[:12]]]
    acceptance = drawn["acceptance-by-channel"]["spec"]
    assert acceptance["categories"] == daily["days"] and len(daily["days"]) == 14
    assert [(s["name"], s["values"]) for s in acceptance["series"]] == [
        (c["channel"], c["acceptance_rate"]) for c in daily["channels"]
    ]
    volume = drawn["decision-volume"]["spec"]
    assert [(s["name"], s["values"]) for s in volume["series"]] == [(c["channel"], c["decisions"]) for c in daily["channels"]]
    assert sum(daily["decisions"]) == totals["decisions"]
    latency = drawn["decision-latency"]["spec"]
    assert [s["values"] for s in latency["series"]] == [daily["latency_p50_us"], daily["latency_p95_us"]]
    rules = drawn["removals-by-rule"]["spec"]  # a bar per rule, stacked by rule set
    shown_rules = removals["rules"][:12]
    assert rules["categories"] == list(dict.fromkeys(r["rule"] for r in shown_rules))
    bars = {(s["name"], rule): v for s in rules["series"] for rule, v in zip(rules["categories"], s["values"], strict=True) if v}
    assert bars == {(r["ruleset"], r["rule"]): r["removals"] for r in shown_rules}
    assert f"latest {removals['decisions']:,} decisions" in page.inner_text("#removal-sample")
    assert page.inner_text("#kpi-decisions .kpi-value") == f"{totals['decisions']:,}"
    rows = page.locator("#offer-table tbody tr")
    assert rows.count() == len(offers) and offers[0]["code"] in rows.first.inner_text()
    screenshot(page, "console-offers")

    since = (dt.date.fromisoformat(shown["until"]) - dt.timedelta(days=3)).isoformat()
    submit_period(page, since=since)
    week = api(live_server, "/api/v1/decisions/statistics/daily", **period(page))
    drawn = charts(page)
    assert drawn["acceptance-by-channel"]["spec"]["categories"] == week["days"] and len(week["days"]) == 3
    assert [s["values"] for s in drawn["decision-volume"]["spec"]["series"]] == [c["decisions"] for c in week["channels"]]
    assert 0 < sum(week["decisions"]) < sum(daily["decisions"])
    assert page.inner_text("#kpi-decisions .kpi-value") == f"{sum(week['decisions']):,}"
