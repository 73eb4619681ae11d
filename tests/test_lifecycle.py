"""Lifecycle: the event path moves a stage at once and records why; bulk runs; manual changes."""

from __future__ import annotations

import datetime as dt

import pytest


def _now(days_ago: float = 0) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)).isoformat()


@pytest.fixture
def customer(client, auth):
    assert client.post("/api/v1/customers", json={"external_id": "L-1"}, headers=auth("admin")).status_code == 201
    return "L-1"


def _buy(client, auth, n, days_ago=0):
    body = {"external_id": f"L-T{n}", "customer_id": "L-1", "occurred_at": _now(days_ago), "amount": "20.00"}
    response = client.post("/api/v1/transactions", json=body, headers=auth("ingest"))
    assert response.status_code == 201, response.get_json()


def _state(client, auth):
    return client.get("/api/v1/customers/L-1", headers=auth("analyst")).get_json()["state"]


def test_the_third_purchase_moves_a_customer_to_growth_at_once(client, auth, customer):
    assert _state(client, auth)["stage"] is None
    _buy(client, auth, 1, days_ago=10)
    assert _state(client, auth)["stage"] == "onboarding"
    _buy(client, auth, 2, days_ago=5)
    assert _state(client, auth)["stage"] == "onboarding"
    _buy(client, auth, 3)
    state = _state(client, auth)
    assert state["stage"] == "growth"
    transitions = client.get("/api/v1/customers/L-1/transitions", headers=auth("analyst")).get_json()["items"]
    assert [(t["from_stage"], t["to_stage"], t["rule_id"], t["source"]) for t in transitions] == [
        ("onboarding", "growth", "growing", "event"),
        (None, "onboarding", "first_purchases", "event"),
    ]
    assert transitions[0]["rule_revision"] and transitions[0]["at"] == state["stage_since"]


def test_a_repeated_purchase_records_nothing_twice(client, auth, customer):
    body = {"external_id": "L-T1", "customer_id": "L-1", "occurred_at": _now(), "amount": "20.00"}
    assert client.post("/api/v1/transactions", json=body, headers=auth("ingest")).status_code == 201
    assert client.post("/api/v1/transactions", json=body, headers=auth("ingest")).status_code == 200  # a no-op
    transitions = client.get("/api/v1/customers/L-1/transitions", headers=auth("analyst")).get_json()["items"]
    assert len(transitions) == 1


def test_a_manual_stage_change_is_audited_and_checked(client, auth, customer):
    _buy(client, auth, 1)
    response = client.post(
        "/api/v1/customers/L-1/stage", json={"stage": "retention", "reason": "VIP handover call"}, headers=auth("editor")
    )
    assert response.status_code == 200, response.get_json()
    transition = response.get_json()["transition"]
    assert (transition["from_stage"], transition["to_stage"], transition["source"]) == ("onboarding", "retention", "manual")
    assert transition["actor"] == "key:test-editor" and transition["reason"] == "VIP handover call"
    assert transition["rule_id"] is None
    again = client.post(
        "/api/v1/customers/L-1/stage", json={"stage": "retention", "reason": "same again"}, headers=auth("editor")
    )
    assert again.get_json() == {"changed": False, "transition": None}
    bad = client.post("/api/v1/customers/L-1/stage", json={"stage": "vip", "reason": "not a stage"}, headers=auth("editor"))
    assert (
        bad.status_code == 422 and bad.get_json()["code"] == "stage_invalid" and "growth" in bad.get_json()["errors"]["stage"][0]
    )
    missing = client.post("/api/v1/customers/L-1/stage", json={"stage": "growth"}, headers=auth("editor"))
    assert missing.status_code == 422 and "reason" in missing.get_json()["errors"]
    unknown = client.post("/api/v1/customers/NOPE/stage", json={"stage": "growth", "reason": "who?"}, headers=auth("editor"))
    assert unknown.status_code == 404 and unknown.get_json()["code"] == "customer_not_found"


def test_the_bulk_run_moves_silent_customers_and_is_idempotent(client, auth, database):
    headers = auth("admin")
    for cid, days in (("Q-1", 75), ("Q-2", 200), ("Q-3", 2)):
        client.post("/api/v1/customers", json={"external_id": cid, "created_at": _now(400)}, headers=headers)
        for n in range(3):
            body = {"external_id": f"{cid}-{n}", "customer_id": cid, "occurred_at": _now(days + n), "amount": "5.00"}
            assert client.post("/api/v1/transactions", json=body, headers=headers).status_code == 201
    stages = lambda: {
        c: client.get(f"/api/v1/customers/{c}", headers=headers).get_json()["state"]["stage"]  # noqa: E731
        for c in ("Q-1", "Q-2", "Q-3")
    }
    # The event path already judged each purchase as it arrived (old purchases: already silent).
    assert stages() == {"Q-1": "win_back", "Q-2": "churn_risk", "Q-3": "growth"}
    # Time passes: move Q-3's purchases back by rewriting history is not possible, so a manual
    # stage stands in for a stale one, and the bulk run puts every customer where the rules say.
    client.post("/api/v1/customers/Q-1/stage", json={"stage": "retention", "reason": "stale on purpose"}, headers=headers)
    judged = {
        c: {
            k: client.get(f"/api/v1/customers/{c}", headers=headers).get_json()["state"][k]
            for k in ("journey_stage", "value_score", "value_segment")
        }
        for c in ("Q-1", "Q-2", "Q-3")
    }
    run = client.post("/api/v1/lifecycle/evaluate", headers=headers).get_json()
    assert run["customers"] == 3 and run["changed"] == 1
    assert run["transitions"] == [{"from": "retention", "to": "win_back", "count": 1}]
    assert stages()["Q-1"] == "win_back"
    # The bulk run (vectorized) and the event path (one customer) agree on journey and value.
    for c, before in judged.items():
        after = client.get(f"/api/v1/customers/{c}", headers=headers).get_json()["state"]
        assert after["journey_stage"] == before["journey_stage"] and after["value_segment"] == before["value_segment"]
        assert after["value_score"] == pytest.approx(before["value_score"], abs=0.02)
    assert judged["Q-2"]["journey_stage"] == "dormant" and judged["Q-3"]["journey_stage"] == "loyalty"
    assert client.post("/api/v1/lifecycle/evaluate", headers=headers).get_json()["changed"] == 0
    bulk = client.get("/api/v1/lifecycle/transitions?source=bulk", headers=headers).get_json()["items"]
    assert [(t["customer_id"], t["from_stage"], t["to_stage"], t["rule_id"]) for t in bulk] == [
        ("Q-1", "retention", "win_back", "silent")
    ]

    stats = client.get("/api/v1/lifecycle/statistics", headers=headers).get_json()
    by_stage = {s["stage"]: s["customers"] for s in stats["stages"]}
    assert by_stage["win_back"] == 1 and by_stage["churn_risk"] == 1 and by_stage["growth"] == 1
    assert [s["stage"] for s in stats["stages"]][:2] == ["acquisition", "onboarding"]
    actions = {s["stage"]: s["actions"] for s in stats["stages"]}
    assert actions["growth"] == ["cross_sell", "upsell"] and actions["churn_risk"] == ["retention_call", "win_back_discount"]
    matrix = {(m["from"], m["to"]): m["count"] for m in stats["matrix"]}
    assert matrix == {
        (None, "win_back"): 1,
        (None, "churn_risk"): 1,
        (None, "onboarding"): 1,
        ("onboarding", "growth"): 1,
        ("win_back", "retention"): 1,
        ("retention", "win_back"): 1,
    }
    empty = client.get("/api/v1/lifecycle/statistics?since=2020-01-01T00:00:00Z&until=2020-02-01T00:00:00Z", headers=headers)
    assert empty.get_json()["matrix"] == []


def test_rfm_over_the_api_and_the_event_path_places_new_buyers(client, auth, database):
    headers = auth("admin")
    for i in range(1, 11):
        client.post("/api/v1/customers", json={"external_id": f"R-{i}", "created_at": _now(300)}, headers=headers)
        for n in range(i):  # customer i buys i times, i * 10.00 each, last purchase i days ago
            body = {
                "external_id": f"R-{i}-{n}",
                "customer_id": f"R-{i}",
                "occurred_at": _now(i + n * 7),
                "amount": f"{i * 10}.00",
            }
            assert client.post("/api/v1/transactions", json=body, headers=headers).status_code == 201
    client.post("/api/v1/customers", json={"external_id": "R-0", "created_at": _now(300)}, headers=headers)
    run = client.post("/api/v1/rfm/calculate", json={}, headers=headers)
    assert run.status_code == 200, run.get_json()
    assert run.get_json()["buyers"] == 10 and sum(run.get_json()["segments"].values()) == 10
    best = client.get("/api/v1/customers/R-10", headers=headers).get_json()["state"]["rfm"]
    worst = client.get("/api/v1/customers/R-1", headers=headers).get_json()["state"]["rfm"]
    assert (best["f"], best["m"]) == (5, 5) and best["r"] == 1  # bought most, but longest ago
    assert (worst["r"], worst["f"], worst["m"]) == (5, 1, 1) and worst["segment"] == "New Customers"
    assert client.get("/api/v1/customers/R-0", headers=headers).get_json()["state"]["rfm"] is None
    # A first purchase of R-0 is placed against the run's cut points at once.
    body = {"customer_id": "R-0", "occurred_at": _now(), "amount": "1000.00"}
    assert client.post("/api/v1/transactions", json=body, headers=headers).status_code == 201
    placed = client.get("/api/v1/customers/R-0", headers=headers).get_json()["state"]["rfm"]
    assert (placed["r"], placed["f"], placed["m"]) == (5, 1, 5)
    one = client.get("/api/v1/customers/R-0/rfm", headers=headers).get_json()
    assert one["frequency"] == 1 and one["monetary"] == "1000.00" and one["recency_days"] < 0.01
    assert one["scores"] == placed and one["run"]["id"] == runs_id(client, headers)
    stats = client.get("/api/v1/rfm/statistics", headers=headers).get_json()
    assert sum(s["customers"] for s in stats["segments"]) == 11 and stats["run"]["buyers"] == 10
    runs = client.get("/api/v1/rfm/runs", headers=headers).get_json()["items"]
    assert len(runs) == 1 and len(runs[0]["cuts"]["monetary"]) == 4


def runs_id(client, headers):
    return client.get("/api/v1/rfm/runs", headers=headers).get_json()["items"][0]["id"]


def test_clv_of_a_customer_over_the_api(client, auth, database):
    headers = auth("admin")
    client.post("/api/v1/customers", json={"external_id": "V-1", "created_at": _now(100)}, headers=headers)
    client.post(
        "/api/v1/transactions",
        json={"customer_id": "V-1", "occurred_at": _now(50), "amount": "10.00", "cost": "4.00"},
        headers=headers,
    )
    client.post("/api/v1/transactions", json={"customer_id": "V-1", "occurred_at": _now(10), "amount": "0.05"}, headers=headers)
    body = client.get("/api/v1/customers/V-1/clv", headers=headers).get_json()
    h = body["historical"]
    # Cost: 4.00 carried + 0.05 × (1 - 0.30) = 0.035, half up to 0.04.
    assert (h["revenue"], h["cost"], h["profit"], h["cost_estimated"]) == ("10.05", "4.04", "6.01", "0.04")
    assert h["orders"] == 2 and h["average_order"] == "5.03" and h["tenure_days"] == 100 and h["lifespan_days"] == 40
    assert body["predicted"]["model"]["fallback"] is True and body["predicted"]["ltv_12m"] == pytest.approx(10.05)
    before = client.get("/api/v1/customers/V-1/clv", query_string={"as_of": _now(30)}, headers=headers).get_json()["historical"]
    assert before["revenue"] == "10.00" and before["orders"] == 1
    empty = client.post("/api/v1/customers", json={"external_id": "V-2"}, headers=headers)
    assert empty.status_code == 201
    nothing = client.get("/api/v1/customers/V-2/clv", headers=headers).get_json()["historical"]
    assert (nothing["revenue"], nothing["orders"], nothing["average_order"], nothing["first_purchase_at"]) == (
        "0.00",
        0,
        "0.00",
        None,
    )
    page = client.get("/api/v1/clv?limit=1", headers=headers).get_json()
    assert [r["customer_id"] for r in page["items"]] == ["V-1"] and page["items"][0]["profit"] == "6.01"
    rest = client.get("/api/v1/clv", query_string={"limit": 1, "cursor": page["next_cursor"]}, headers=headers).get_json()
    assert [r["customer_id"] for r in rest["items"]] == ["V-2"] and rest["next_cursor"] is None
    stats = client.get("/api/v1/clv/statistics", headers=headers).get_json()
    assert (stats["customers"], stats["buyers"], stats["revenue"], stats["profit"]) == (2, 1, "10.05", "6.01")
    assert stats["revenue_per_buyer"]["p50"] == "10.05"


def test_value_is_scored_on_every_event_and_summarised(client, auth, customer):
    _buy(client, auth, 1)
    state = _state(client, auth)
    assert 0 <= state["value_score"] <= 100 and state["value_segment"] in ("high", "medium", "low")
    first = state["value_score"]
    for n in range(2, 6):
        _buy(client, auth, n, days_ago=n)
    assert _state(client, auth)["value_score"] >= first  # more purchases, never less value here
    stats = client.get("/api/v1/value/statistics", headers=auth("analyst")).get_json()
    assert sum(s["customers"] for s in stats["segments"]) == 1 and stats["not_evaluated"] == 0
    assert sum(b["customers"] for b in stats["histogram"]) == 1 and len(stats["histogram"]) == 10


def test_the_360_view_shows_everything_consistently(client, auth, customer):
    for n in range(1, 4):
        _buy(client, auth, n, days_ago=n)
    touch = {"customer_id": "L-1", "occurred_at": _now(), "channel": "app", "kind": "offer_click"}
    assert client.post("/api/v1/touchpoints", json=touch, headers=auth("ingest")).status_code == 201
    response = client.get("/api/v1/customers/L-1/profile?recent=2", headers=auth("channel"))
    assert response.status_code == 200, response.get_json()
    view = response.get_json()
    state = client.get("/api/v1/customers/L-1", headers=auth("channel")).get_json()["state"]
    assert view["customer"]["id"] == "L-1" and view["stage"] == state["stage"] == "growth"
    assert view["recommended_actions"] == ["cross_sell", "upsell"]
    assert view["value"] == {"score": state["value_score"], "segment": state["value_segment"]}
    assert set(view["scores"]) == {"churn_risk", "propensity_to_buy", "ltv", "engagement_score", "nbo"}
    assert all(m["fallback"] for m in view["models"].values())  # the test app has no trained models
    assert view["clv"]["historical"]["revenue"] == "60.00" and view["clv"]["historical"]["orders"] == 3
    assert len(view["recent_transactions"]) == 2 and view["recent_transactions"][0]["id"] == "L-T1"
    assert [t["kind"] for t in view["recent_touchpoints"]] == ["offer_click"]
    assert [t["to_stage"] for t in view["transitions"]] == ["growth", "onboarding"]
    assert {"segment": "new_customers", "rule": "new_customers"} in view["segments"]
    assert view["recent_decisions"] == [] and view["rule_revision"]
    assert client.get("/api/v1/customers/NOPE/profile", headers=auth("channel")).status_code == 404


def test_touchpoints_drive_the_journey_stage(client, auth, customer):
    assert _state(client, auth)["journey_stage"] is None
    touch = {"customer_id": "L-1", "occurred_at": _now(), "channel": "app", "kind": "app_open"}
    client.post("/api/v1/touchpoints", json=touch, headers=auth("ingest"))
    assert _state(client, auth)["journey_stage"] == "awareness"
    client.post("/api/v1/touchpoints", json={**touch, "kind": "offer_click"}, headers=auth("ingest"))
    assert _state(client, auth)["journey_stage"] == "consideration"
    _buy(client, auth, 1)
    assert _state(client, auth)["journey_stage"] == "purchase"
    assert client.get("/api/v1/customers/L-1/profile", headers=auth("channel")).get_json()["journey_stage"] == "purchase"


def test_a_manual_stage_for_a_customer_without_events_is_kept(client, auth, customer):
    response = client.post(
        "/api/v1/customers/L-1/stage", json={"stage": "acquisition", "reason": "signed up at the fair"}, headers=auth("editor")
    )
    assert response.status_code == 200 and response.get_json()["changed"] is True
    assert _state(client, auth)["stage"] == "acquisition"
    transitions = client.get("/api/v1/customers/L-1/transitions", headers=auth("analyst")).get_json()["items"]
    assert [(t["from_stage"], t["to_stage"]) for t in transitions] == [(None, "acquisition")]


def test_the_bulk_run_stages_customers_without_events(client, auth, customer):
    run = client.post("/api/v1/lifecycle/evaluate", headers=auth("editor")).get_json()
    assert run["customers"] == 1 and run["transitions"] == [{"from": None, "to": "acquisition", "count": 1}]
    assert _state(client, auth)["stage"] == "acquisition" and _state(client, auth)["value_segment"] == "low"


def test_a_refund_lowers_spend_but_is_not_a_purchase(client, auth, customer):
    _buy(client, auth, 1, days_ago=3)
    refund = {"customer_id": "L-1", "occurred_at": _now(), "amount": "-5.00", "category": "accessory"}
    assert client.post("/api/v1/transactions", json=refund, headers=auth("ingest")).status_code == 201
    state = _state(client, auth)
    assert (state["transaction_count"], state["total_spend"]) == (1, "15.00")
    assert state["last_purchase_at"] < _now(2)  # the refund is not the last purchase
    assert state["stage"] == "onboarding"
    clv = client.get("/api/v1/customers/L-1/clv", headers=auth("analyst")).get_json()["historical"]
    assert (clv["revenue"], clv["orders"], clv["average_order"]) == ("15.00", 1, "15.00")
    features = client.get("/api/v1/customers/L-1/scores", headers=auth("analyst")).get_json()["features"]
    assert (features["frequency"], features["monetary"], features["purchases_3m"], features["spend_3m"]) == (1, 15.0, 1, 15.0)
