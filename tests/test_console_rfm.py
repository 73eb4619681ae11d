"""The RFM and CLV dashboards: their API (grid, moves, CLV summary) and pages over HTTP, then in Chromium."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import urllib.request
from decimal import Decimal

import pytest

from tests.test_console import sign_in


def _ago(days: float) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).isoformat()


def _base(client, auth, customers: int = 10) -> int:
    """Customer i buys i times, i × 10.00 each, the last i days ago; one more never buys. Return total revenue in cents."""
    headers, total = auth("admin"), 0
    for i in range(1, customers + 1):
        client.post("/api/v1/customers", json={"external_id": f"C-{i}", "created_at": _ago(300)}, headers=headers)
        for n in range(i):
            body = {
                "external_id": f"C-{i}-{n}",
                "customer_id": f"C-{i}",
                "occurred_at": _ago(i + n * 7),
                "amount": f"{i * 10}.00",
            }
            assert client.post("/api/v1/transactions", json=body, headers=headers).status_code == 201
            total += i * 1000
    client.post("/api/v1/customers", json={"external_id": "C-0", "created_at": _ago(300)}, headers=headers)
    return total


def test_the_screens_on_an_empty_database_say_what_to_do(client, auth, keys):
    assert client.get("/api/v1/rfm/grid", headers=auth("analyst")).get_json() == {
        "measure": "customers",
        "run": None,
        "total": 0,
        "cells": [],
    }
    assert client.get("/api/v1/rfm/moves", headers=auth("analyst")).get_json() == {"run": None, "previous": None, "moves": []}
    summary = client.get("/api/v1/clv/summary", headers=auth("analyst")).get_json()
    assert summary["customers"] == 0 and summary["historical"]["bins"] == [] and summary["top"] == []
    sign_in(client, keys["analyst"])
    page = client.get("/console/rfm")
    assert page.status_code == 200 and "No RFM run yet" in page.get_data(as_text=True)
    assert "data-chart" not in page.get_data(as_text=True)
    page = client.get("/console/clv")
    assert page.status_code == 200 and "No customers yet" in page.get_data(as_text=True)


def test_a_bad_measure_is_refused_by_the_api_and_the_page(client, auth, keys):
    answer = client.get("/api/v1/rfm/grid?measure=profit", headers=auth("analyst"))
    assert answer.status_code == 422 and answer.get_json()["errors"] == {"query.measure": ["Must be one of: customers, revenue."]}
    assert client.get("/api/v1/rfm/grid?color=red", headers=auth("analyst")).status_code == 422
    sign_in(client, keys["analyst"])
    page = client.get("/console/rfm?measure=profit")
    assert page.status_code == 422
    html = page.get_data(as_text=True)
    assert "Check the form" in html and "measure" in html and "Must be one of" in html


def test_the_grid_counts_buyers_and_revenue_and_runs_record_their_moves(client, auth, keys):
    revenue = _base(client, auth)
    headers = auth("analyst")
    first = client.post("/api/v1/rfm/calculate", json={}, headers=auth("admin")).get_json()
    moves = client.get("/api/v1/rfm/moves", headers=headers).get_json()
    assert moves["run"]["id"] == first["id"] and moves["previous"] is None
    assert {m["from"] for m in moves["moves"]} == {"none"}  # nobody had a segment before the first run
    assert {m["to"]: m["customers"] for m in moves["moves"]} == first["segments"]

    grid = client.get("/api/v1/rfm/grid", headers=headers).get_json()
    assert grid["run"]["id"] == first["id"] and grid["total"] == 10 == sum(c["value"] for c in grid["cells"])
    assert {(c["r"], c["f"]) for c in grid["cells"]} <= {(r, f) for r in range(1, 6) for f in range(1, 6)}
    money = client.get("/api/v1/rfm/grid?measure=revenue", headers=headers).get_json()
    assert Decimal(money["total"]) == Decimal(revenue) / 100 == sum(Decimal(c["value"]) for c in money["cells"])
    best = client.get("/api/v1/customers/C-10", headers=headers).get_json()["state"]["rfm"]
    cell = next(c for c in money["cells"] if (c["r"], c["f"]) == (best["r"], best["f"]))
    assert Decimal(cell["value"]) >= Decimal("1000.00")  # C-10 spent 10 × 100.00 and sits in that cell

    # C-1 buys a lot now: the next run moves them out of their segment, and records it.
    before = client.get("/api/v1/customers/C-1", headers=headers).get_json()["state"]["rfm"]["segment"]
    for n in range(6):
        body = {"external_id": f"C-1-new-{n}", "customer_id": "C-1", "occurred_at": _ago(0.01), "amount": "500.00"}
        assert client.post("/api/v1/transactions", json=body, headers=auth("ingest")).status_code == 201
    between = client.get("/api/v1/customers/C-1", headers=headers).get_json()["state"]["rfm"]["segment"]
    second = client.post("/api/v1/rfm/calculate", json={}, headers=auth("admin")).get_json()
    after = client.get("/api/v1/customers/C-1", headers=headers).get_json()["state"]["rfm"]["segment"]
    moves = client.get("/api/v1/rfm/moves", headers=headers).get_json()
    assert moves["run"]["id"] == second["id"] and moves["previous"]["id"] == first["id"]
    assert sum(m["customers"] for m in moves["moves"]) == 10
    assert all(m["moved"] == (m["from"] != m["to"]) for m in moves["moves"])
    assert between != before or after != before  # they bought 6 × 500.00 today: their scores rise
    pair = next(m for m in moves["moves"] if (m["from"], m["to"]) == (between, after))
    assert pair["customers"] >= 1

    grid = client.get("/api/v1/rfm/grid", headers=headers).get_json()
    assert grid["run"]["id"] == second["id"]
    sign_in(client, keys["analyst"])
    html = client.get("/console/rfm").get_data(as_text=True)
    spec = json.loads(re.search(r'id="rfm-grid-spec">(.*?)</script>', html).group(1))
    assert spec["x"] == ["1", "2", "3", "4", "5"] and spec["y"] == ["5", "4", "3", "2", "1"]
    assert sorted(spec["cells"]) == sorted([c["f"] - 1, 5 - c["r"], c["value"]] for c in grid["cells"])
    assert f"Cut points of run #{second['id']}" in html and f"in run #{second['id']} since run #{first['id']}" in html
    html = client.get("/console/rfm?measure=revenue").get_data(as_text=True)
    spec = json.loads(re.search(r'id="rfm-grid-spec">(.*?)</script>', html).group(1))
    assert sum(c[2] for c in spec["cells"]) == pytest.approx(float(revenue) / 100 + 3000)


def test_the_clv_summary_matches_the_per_customer_figures_and_is_cached(client, auth, keys, app):
    _base(client, auth)
    headers = auth("analyst")
    summary = client.get("/api/v1/clv/summary", headers=headers).get_json()
    assert summary["customers"] == 11 and summary["buyers"] == 10
    assert sum(b["count"] for b in summary["historical"]["bins"]) == 10
    assert sum(b["count"] for b in summary["predicted"]["bins"]) == 11
    page = client.get("/api/v1/clv?limit=50", headers=headers).get_json()["items"]
    by_revenue = sorted((r for r in page if r["orders"]), key=lambda r: -Decimal(r["revenue"]))
    assert [t["customer_id"] for t in summary["top"]] == [r["customer_id"] for r in by_revenue]
    assert [t["revenue"] for t in summary["top"]] == [r["revenue"] for r in by_revenue]
    assert summary["historical"]["max"] == 1000.0 and summary["historical"]["median"] == pytest.approx(305.0)  # (250 + 360) / 2
    assert sum(g["customers"] for g in summary["by_stage"]) == 11 == sum(g["customers"] for g in summary["by_value_segment"])
    # Cached: a purchase alone does not renew it (the same computation time); a new customer does.
    body = {"external_id": "C-late", "customer_id": "C-2", "occurred_at": _ago(0), "amount": "5.00"}
    assert client.post("/api/v1/transactions", json=body, headers=auth("ingest")).status_code == 201
    assert client.get("/api/v1/clv/summary", headers=headers).get_json()["computed_at"] == summary["computed_at"]
    client.post("/api/v1/customers", json={"external_id": "C-new"}, headers=auth("admin"))
    renewed = client.get("/api/v1/clv/summary", headers=headers).get_json()
    assert (
        renewed["customers"] == 12 and renewed["data_version"]["last_customer_id"] > summary["data_version"]["last_customer_id"]
    )

    sign_in(client, keys["analyst"])
    html = client.get("/console/clv").get_data(as_text=True)
    spec = json.loads(re.search(r'id="clv-historical-spec">(.*?)</script>', html).group(1))
    assert spec["bins"] == renewed["historical"]["bins"]
    assert 'href="/console/customers/C-10"' in html


# --- in Chromium, on the demo base -------------------------------------------------------------


def _api(live_server, path: str) -> dict:
    request = urllib.request.Request(live_server.url(path), headers={"Authorization": f"Bearer {live_server.keys['analyst']}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def _sign_in(page, live_server, target: str) -> None:
    page.goto(live_server.url("/console/sign-in?next=" + target))
    page.fill("input[name=api_key]", live_server.keys["analyst"])
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(target) + r"$"))


def _spec(page, chart: str) -> dict:
    page.wait_for_selector(f"#{chart}[data-rendered=true]")
    return page.evaluate("(id) => window.consoleCharts[id].spec", chart)


def test_the_rfm_screen_draws_the_apis_numbers_and_toggles_the_measure(page, live_server, screenshot):
    problems = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    _sign_in(page, live_server, "/console/rfm")
    grid = _api(live_server, "/api/v1/rfm/grid?measure=customers")
    assert grid["cells"], "the demo base has an RFM run"
    spec = _spec(page, "rfm-grid")
    assert sorted(spec["cells"]) == sorted([c["f"] - 1, 5 - c["r"], c["value"]] for c in grid["cells"])
    stats = _api(live_server, "/api/v1/rfm/statistics")
    bars = _spec(page, "rfm-segments")
    assert bars["categories"] == [s["segment"] for s in stats["segments"]]
    assert bars["series"][0]["values"] == [s["customers"] for s in stats["segments"]]
    moves = _api(live_server, "/api/v1/rfm/moves")
    if moves["moves"]:
        drawn = _spec(page, "rfm-moves")
        assert sum(c[2] for c in drawn["cells"]) == sum(m["customers"] for m in moves["moves"])
    assert page.locator("#rfm-cuts td.num").count() == 12
    screenshot(page, "console-rfm")

    page.click("#measure-revenue")
    page.wait_for_url(re.compile(r"measure=revenue$"))
    revenue = _api(live_server, "/api/v1/rfm/grid?measure=revenue")
    spec = _spec(page, "rfm-grid")
    assert sorted(spec["cells"]) == sorted([c["f"] - 1, 5 - c["r"], float(c["value"])] for c in revenue["cells"])
    assert spec["cells"] != sorted([c["f"] - 1, 5 - c["r"], c["value"]] for c in grid["cells"])
    screenshot(page, "console-rfm-revenue")
    page.go_back()
    page.wait_for_url(re.compile(r"/console/rfm$"))
    assert sorted(_spec(page, "rfm-grid")["cells"]) == sorted([c["f"] - 1, 5 - c["r"], c["value"]] for c in grid["cells"])
    assert problems == []


def test_the_clv_screen_draws_the_apis_numbers_fast(page, live_server, screenshot):
    problems = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    _sign_in(page, live_server, "/console/clv")
    summary = _api(live_server, "/api/v1/clv/summary")
    assert summary["buyers"] > 0
    for chart, part in (("clv-historical", "historical"), ("clv-predicted", "predicted")):
        assert _spec(page, chart)["bins"] == summary[part]["bins"]
    for chart, part, field in (("clv-by-stage", "by_stage", "stage"), ("clv-by-segment", "by_value_segment", "value_segment")):
        bars = _spec(page, chart)
        assert bars["categories"] == [g[field] for g in summary[part]]
        assert bars["series"][0]["values"] == [g["avg_revenue"] for g in summary[part]]
        assert bars["series"][1]["values"] == [g["avg_predicted"] for g in summary[part]]
    first = summary["top"][0]["customer_id"]
    assert page.locator("#clv-top tbody tr").count() == len(summary["top"])
    screenshot(page, "console-clv")
    # Cached per data version: a page view does not recompute.
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        page.request.get(live_server.url("/console/clv"))
        timings.append(time.perf_counter() - started)
    assert sorted(timings)[-1] < 0.5, timings
    page.click(f"#clv-top a:text-is('{first}')")
    page.wait_for_url(re.compile(f"/console/customers/{first}$"))
    assert problems == []
