"""The segments and journeys screens over HTTP, the member filters and touchpoint statistics they read, and in Chromium."""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.request
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest


def sign_in(client, key: str):
    """Post the key through the sign-in form, as a browser does."""
    page = client.get("/console/sign-in")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return client.post("/console/sign-in", data={"api_key": key, "csrf_token": token})


def _ago(days: float) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).isoformat()


@pytest.fixture
def base(client, auth):
    """Customers S-1..S-6 (S-i bought i times, named Ana or Bo), and the segment `buyers` of everyone who bought."""
    headers = auth("admin")
    for i in range(1, 7):
        customer = {"external_id": f"S-{i}", "first_name": "Ana" if i % 2 else "Bo", "created_at": _ago(100)}
        assert client.post("/api/v1/customers", json=customer, headers=headers).status_code == 201
        for n in range(i):
            body = {"external_id": f"S-{i}-{n}", "customer_id": f"S-{i}", "occurred_at": _ago(n * 20 + 1), "amount": "10.00"}
            assert client.post("/api/v1/transactions", json=body, headers=headers).status_code == 201
    segment = {"name": "buyers", "description": "bought at least once", "condition": "frequency >= 1"}
    assert client.post("/api/v1/segments", json=segment, headers=headers).status_code == 201
    return headers


def _members(html: str) -> list[str]:
    table = html.split('id="member-list"', 1)[1].split("</table>", 1)[0] if 'id="member-list"' in html else ""
    return re.findall(r'href="/console/customers/([^"]+)"', table)


def test_the_pages_render_on_an_empty_database(client, keys):
    sign_in(client, keys["analyst"])
    segments = client.get("/console/segments")
    assert segments.status_code == 200
    assert "No segments yet" in segments.get_data(as_text=True) and "POST /api/v1/segments" in segments.get_data(as_text=True)
    journeys = client.get("/console/journeys")
    assert journeys.status_code == 200
    html = journeys.get_data(as_text=True)
    assert "No journeys yet" in html and "No touchpoints in this period" in html and "data-chart" not in html


def test_a_segment_lists_its_members_with_links_to_them(client, keys, base):
    sign_in(client, keys["analyst"])
    listing = client.get("/console/segments").get_data(as_text=True)
    assert 'href="/console/segments/buyers"' in listing and "frequency &gt;= 1" in listing
    assert re.search(r'id="size-buyers">6<', listing)
    page = client.get("/console/segments/buyers")
    assert page.status_code == 200
    assert _members(page.get_data(as_text=True)) == [f"S-{i}" for i in range(1, 7)]
    small = client.get("/console/segments/buyers?limit=4").get_data(as_text=True)
    assert _members(small) == ["S-1", "S-2", "S-3", "S-4"]
    [next_url] = re.findall(r'href="([^"]+)" rel="next"', small)
    rest = client.get(next_url.replace("&amp;", "&")).get_data(as_text=True)
    assert _members(rest) == ["S-5", "S-6"] and 'rel="next"' not in rest


def test_filters_narrow_the_members_as_in_the_api(client, keys, auth, base):
    sign_in(client, keys["analyst"])
    stages = {f"S-{i}": client.get(f"/api/v1/customers/S-{i}", headers=base).get_json()["state"]["stage"] for i in range(1, 7)}
    stage = stages["S-6"]
    expected = [c for c, s in stages.items() if s == stage]
    html = client.get("/console/segments/buyers", query_string={"stage": stage}).get_data(as_text=True)
    assert _members(html) == expected
    assert re.search(r'id="member-count">' + str(len(expected)) + " match", html)
    api = client.get("/api/v1/segments/buyers/members", query_string={"stage": stage}, headers=auth("analyst")).get_json()
    assert [m["customer_id"] for m in api["items"]] == expected

    by_name = client.get("/console/segments/buyers", query_string={"q": "bo", "stage": ""}).get_data(as_text=True)
    assert _members(by_name) == ["S-2", "S-4", "S-6"]
    by_id = client.get("/console/segments/buyers", query_string={"q": "s-3"}).get_data(as_text=True)
    assert _members(by_id) == ["S-3"]
    none = client.get("/console/segments/buyers", query_string={"q": "nobody"}).get_data(as_text=True)
    assert _members(none) == [] and "No member matches these filters" in none


@pytest.mark.parametrize(
    "query,field",
    [
        ({"stage": "nonsense"}, "stage"),
        ({"value_segment": "gold"}, "value_segment"),
        ({"cursor": "abc"}, "cursor"),
        ({"limit": "0"}, "limit"),
        ({"q": "x" * 101}, "q"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_member_filters_are_the_console_422_page(client, keys, auth, base, query, field):
    sign_in(client, keys["analyst"])
    response = client.get("/console/segments/buyers", query_string=query)
    assert response.status_code == 422 and response.mimetype == "text/html"
    assert f"<code>{field}</code>" in response.get_data(as_text=True)
    api = client.get("/api/v1/segments/buyers/members", query_string=query, headers=auth("analyst"))
    assert api.status_code == 422 and {field, f"query.{field}"} & set(api.get_json()["errors"])


def test_an_unknown_segment_is_the_console_404_page(client, keys):
    sign_in(client, keys["analyst"])
    response = client.get("/console/segments/nothing_here")
    assert response.status_code == 404 and "no segment named" in response.get_data(as_text=True)


def test_touchpoint_statistics_count_per_week_by_channel_and_kind(client, auth, base):
    monday = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    times = [monday + dt.timedelta(days=d, hours=10) for d in (0, 1, 8, 15, 15, 30)]
    items = [
        {"customer_id": "S-1", "occurred_at": t.isoformat(), "channel": c, "kind": k}
        for t, (c, k) in zip(
            times,
            [("app", "open"), ("sms", "click"), ("app", "open"), ("app", "open"), ("sms", "click"), ("app", "open")],
            strict=True,
        )
    ]
    assert client.post("/api/v1/touchpoints/batch", json={"items": items}, headers=base).status_code == 200
    query = {"since": "2026-03-03T00:00:00Z", "until": "2026-03-23T00:00:00Z", "interval": "week"}
    answer = client.get("/api/v1/touchpoints/statistics", query_string=query, headers=auth("analyst")).get_json()
    assert [p[:10] for p in answer["periods"]] == ["2026-03-02", "2026-03-09", "2026-03-16"]
    assert answer["total"] == 4  # the Monday 2 March one is before since, the 1 April one after until
    assert answer["by_channel"] == [
        {"channel": "app", "counts": [0, 1, 1], "total": 2},
        {"channel": "sms", "counts": [1, 0, 1], "total": 2},
    ]
    assert answer["by_kind"][0] == {"channel": "app", "kind": "open", "counts": [0, 1, 1], "total": 2}
    days = client.get("/api/v1/touchpoints/statistics", query_string={**query, "interval": "day"}, headers=auth("analyst"))
    assert len(days.get_json()["periods"]) == 20 and days.get_json()["total"] == 4
    default = client.get("/api/v1/touchpoints/statistics", headers=auth("analyst")).get_json()
    assert len(default["periods"]) == 12 and dt.datetime.fromisoformat(default["periods"][0]).weekday() == 0


@pytest.mark.parametrize(
    "query,field",
    [
        ({"interval": "month"}, "interval"),
        ({"since": "2026-03-10", "until": "2026-03-01"}, "since"),
        ({"since": "2020-01-01", "until": "2026-01-01", "interval": "day"}, "since"),
        ({"since": "yesterday"}, "since"),
    ],
)
def test_bad_periods_are_422_in_the_api_and_the_console(client, auth, keys, query, field):
    api = client.get("/api/v1/touchpoints/statistics", query_string=query, headers=auth("analyst"))
    assert api.status_code == 422 and {field, f"query.{field}"} & set(api.get_json()["errors"])
    sign_in(client, keys["analyst"])
    page = client.get("/console/journeys", query_string=query)
    assert page.status_code == 422 and f"<code>{field}</code>" in page.get_data(as_text=True)


def test_the_journeys_page_shows_the_funnel_and_touchpoints_of_its_period(client, auth, keys, base):
    items = [{"customer_id": f"S-{i}", "occurred_at": _ago(i), "channel": "app", "kind": "open"} for i in range(1, 7)]
    assert client.post("/api/v1/touchpoints/batch", json={"items": items}, headers=base).status_code == 200
    sign_in(client, keys["analyst"])
    html = client.get("/console/journeys").get_data(as_text=True)
    spec = json.loads(re.search(r'id="journey-funnel-spec">(.*?)</script>', html).group(1))
    answer = client.get(
        "/api/v1/journeys/statistics",
        query_string={"since": _between(html, "since"), "until": _between(html, "until")},
        headers=auth("analyst"),
    ).get_json()
    assert spec["stages"] == [{"name": s["stage"], "value": s["reached"]} for s in answer["funnel"]]
    channels = json.loads(re.search(r'id="touchpoints-by-channel-spec">(.*?)</script>', html).group(1))
    assert channels["series"] == [{"name": "app", "values": channels["series"][0]["values"]}]
    assert sum(channels["series"][0]["values"]) == 6


def _between(html: str, name: str) -> str:
    """The period the page covered, from its data attributes."""
    return re.search(rf'data-{name}="([^"]+)"', html).group(1)


# --- in Chromium, on the demo base ----------------------------------------------------------------


def _api(live_server, path: str, key: str = "analyst", body: dict | None = None) -> dict:
    request = urllib.request.Request(
        live_server.url(path),
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {live_server.keys[key]}", "Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _browser_sign_in(page, live_server, key: str = "analyst") -> None:
    page.goto(live_server.url("/console/sign-in"))
    page.fill("input[name=api_key]", live_server.keys[key])
    with page.expect_navigation():
        page.click("button[type=submit]")


def _charts_drawn(page) -> None:
    # A selector, not wait_for_function: polling a predicate evaluates a string, which the console's CSP refuses.
    page.wait_for_selector("[data-chart]:not([data-rendered])", state="detached")


@pytest.fixture(scope="module")
def demo_segment(live_server):
    """A segment on the demo base (it ships none), recomputed once more so that it has a size history."""
    name = "browser_frequent"
    listed = _api(live_server, "/api/v1/segments")
    if name not in {s["name"] for s in listed["items"]}:
        body = {"name": name, "description": "three purchases or more", "condition": "frequency >= 3"}
        _api(live_server, "/api/v1/segments", key="admin", body=body)
        _api(live_server, "/api/v1/segments/recompute", key="admin", body={})
    return name


def test_segments_in_the_browser_show_the_api_numbers_and_filter(page, live_server, demo_segment, screenshot):
    _browser_sign_in(page, live_server)
    page.goto(live_server.url("/console/segments"))
    _charts_drawn(page)
    counts = _api(live_server, f"/api/v1/segments/{demo_segment}/counts")["items"]
    spark = page.evaluate(f"window.consoleCharts['sizes-{demo_segment}']")
    assert spark["kind"] == "sparkline" and spark["spec"]["values"] == [c["members"] for c in counts][-60:]
    size = _api(live_server, f"/api/v1/segments/{demo_segment}")["members"]
    assert page.inner_text(f"#size-{demo_segment}") == f"{size:,}"
    screenshot(page, "segments-list")

    page.click(f"a[href='/console/segments/{demo_segment}']")
    _charts_drawn(page)
    assert page.evaluate("window.consoleCharts['segment-sizes'].spec.series[0].values") == [c["members"] for c in counts]
    first = page.eval_on_selector_all("#member-list tbody a", "els => els.map(e => e.textContent)")
    members = _api(live_server, f"/api/v1/segments/{demo_segment}/members?limit=25")["items"]
    assert first == [m["customer_id"] for m in members]
    screenshot(page, "segment-members")

    stage = _api(live_server, f"/api/v1/customers/{first[0]}")["state"]["stage"]
    with page.expect_navigation():
        page.select_option("#member-filters select[name=stage]", stage)  # data-autosubmit sends the form
    assert parse_qs(urlsplit(page.url).query)["stage"] == [stage]
    narrowed = page.eval_on_selector_all("#member-list tbody a", "els => els.map(e => e.textContent)")
    api = _api(live_server, f"/api/v1/segments/{demo_segment}/members?" + urlencode({"limit": 25, "stage": stage}))["items"]
    assert narrowed == [m["customer_id"] for m in api] and narrowed != first
    screenshot(page, "segment-members-filtered")

    page.click("#member-list tbody a >> nth=0")
    assert urlsplit(page.url).path == f"/console/customers/{narrowed[0]}"


def test_journeys_in_the_browser_show_the_api_numbers_and_follow_the_period(page, live_server, screenshot):
    _browser_sign_in(page, live_server)
    page.goto(live_server.url("/console/journeys"))
    _charts_drawn(page)
    period = page.evaluate(
        "({since: document.body.querySelector('[data-since]').dataset.since, until: document.body.querySelector('[data-until]').dataset.until})"
    )
    journeys = _api(live_server, "/api/v1/journeys/statistics?" + urlencode(period))
    touchpoints = _api(live_server, "/api/v1/touchpoints/statistics?" + urlencode({**period, "interval": "week"}))
    funnel = page.evaluate("window.consoleCharts['journey-funnel']")
    assert funnel["kind"] == "funnel"
    assert funnel["spec"]["stages"] == [{"name": s["stage"], "value": s["reached"]} for s in journeys["funnel"]]
    assert funnel["spec"]["stages"][0]["name"] == "awareness" and funnel["spec"]["stages"][0]["value"] > 0
    distribution = page.evaluate("window.consoleCharts['journey-distribution'].spec")
    assert distribution["series"][0]["values"] == [d["customers"] for d in journeys["distribution"]]
    channels = page.evaluate("window.consoleCharts['touchpoints-by-channel'].spec")
    assert channels["categories"] == [p[:10] for p in touchpoints["periods"]]
    assert channels["series"] == [{"name": c["channel"], "values": c["counts"]} for c in touchpoints["by_channel"]]
    kinds = page.evaluate("window.consoleCharts['touchpoints-by-kind'].spec")
    assert [s["values"] for s in kinds["series"]] == [k["counts"] for k in touchpoints["by_kind"]]
    assert sum(sum(s["values"]) for s in channels["series"]) == touchpoints["total"] > 0
    screenshot(page, "journeys")

    since = (dt.date.fromisoformat(touchpoints["periods"][-4][:10])).isoformat()
    page.fill("#period-filters input[name=since]", since)
    with page.expect_navigation():
        page.click("#period-filters button[type=submit]")
    _charts_drawn(page)
    shorter = page.evaluate("window.consoleCharts['touchpoints-by-channel'].spec")
    assert shorter["categories"] == channels["categories"][-4:]
    again = _api(live_server, "/api/v1/touchpoints/statistics?" + urlencode({"since": since, "interval": "week"}))
    assert shorter["series"] == [{"name": c["channel"], "values": c["counts"]} for c in again["by_channel"]]
