"""Journeys: every journey stage change is recorded (event, bulk, manual), read per customer, and summed up."""

from __future__ import annotations

import datetime as dt

import pytest

from decision_server.journeys import service

STAGES = ["awareness", "consideration", "purchase", "loyalty", "dormant"]
BASE = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


def _now(days_ago: float = 0) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)).isoformat()


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def customer(client, auth):
    assert client.post("/api/v1/customers", json={"external_id": "J-1"}, headers=auth("admin")).status_code == 201
    return "J-1"


def _touch(client, auth, kind, n):
    body = {"external_id": f"J-TP{n}", "customer_id": "J-1", "occurred_at": _now(), "channel": "app", "kind": kind}
    assert client.post("/api/v1/touchpoints", json=body, headers=auth("ingest")).status_code == 201


def _buy(client, auth, n, customer_id="J-1", days_ago=0):
    body = {"external_id": f"{customer_id}-T{n}", "customer_id": customer_id, "occurred_at": _now(days_ago), "amount": "20.00"}
    response = client.post("/api/v1/transactions", json=body, headers=auth("ingest"))
    assert response.status_code == 201, response.get_json()


def _journey(client, auth, customer_id="J-1", query="", role="analyst"):
    response = client.get(f"/api/v1/customers/{customer_id}/journey{query}", headers=auth(role))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _moves(history):
    return [(t["from_stage"], t["to_stage"], t["rule_id"], t["source"]) for t in history]


def test_events_move_the_journey_stage_and_record_why(client, auth, customer):
    assert _journey(client, auth) == {"customer_id": "J-1", "stage": None, "since": None, "history": [], "next_cursor": None}
    _touch(client, auth, "app_open", 1)
    _touch(client, auth, "app_open", 2)  # the same stage again: nothing recorded
    _touch(client, auth, "offer_click", 3)
    _buy(client, auth, 1)
    journey = _journey(client, auth)
    assert journey["stage"] == "purchase"
    assert _moves(journey["history"]) == [
        ("consideration", "purchase", "buying", "event"),
        ("awareness", "consideration", "considering", "event"),
        (None, "awareness", "default", "event"),
    ]
    newest = journey["history"][0]
    assert journey["since"] == newest["at"] and newest["customer_id"] == "J-1"
    assert newest["rule_revision"] and newest["actor"] is None and newest["reason"] is None
    state = client.get("/api/v1/customers/J-1", headers=auth("analyst")).get_json()["state"]
    assert state["journey_stage"] == "purchase"
    # The history pages like every list: newest first, `limit` at a time, `cursor` for the next page.
    first = _journey(client, auth, query="?limit=2")
    assert [t["to_stage"] for t in first["history"]] == ["purchase", "consideration"] and first["next_cursor"]
    rest = _journey(client, auth, query=f"?limit=2&cursor={first['next_cursor']}")
    assert [t["to_stage"] for t in rest["history"]] == ["awareness"] and rest["next_cursor"] is None
    assert rest["stage"] == "purchase" and rest["since"] == journey["since"]


def test_the_bulk_pass_records_journey_moves_once(client, auth, customer):
    headers = auth("admin")
    assert client.post("/api/v1/customers", json={"external_id": "J-2"}, headers=headers).status_code == 201
    _buy(client, auth, 1)
    moved = client.post(
        "/api/v1/customers/J-1/journey", json={"stage": "loyalty", "reason": "stale on purpose"}, headers=auth("editor")
    )
    assert moved.status_code == 201, moved.get_json()
    run = client.post("/api/v1/lifecycle/evaluate", headers=headers)
    assert run.status_code == 200, run.get_json()
    # The bulk pass puts J-1 back where the rules say, and gives J-2 (no events) its first stage.
    assert _moves(_journey(client, auth)["history"])[0] == ("loyalty", "purchase", "buying", "bulk")
    assert _moves(_journey(client, auth, "J-2")["history"]) == [(None, "awareness", "default", "bulk")]
    bulk = client.get("/api/v1/journeys/transitions?source=bulk", headers=headers).get_json()["items"]
    assert sorted((t["customer_id"], t["from_stage"], t["to_stage"]) for t in bulk) == [
        ("J-1", "loyalty", "purchase"),
        ("J-2", None, "awareness"),
    ]
    assert all(t["rule_revision"] and t["at"] == bulk[0]["at"] for t in bulk)
    assert client.post("/api/v1/lifecycle/evaluate", headers=headers).status_code == 200
    assert len(client.get("/api/v1/journeys/transitions?source=bulk", headers=headers).get_json()["items"]) == 2


def test_a_manual_move_is_audited_and_checked(client, auth, customer):
    _touch(client, auth, "app_open", 1)
    response = client.post(
        "/api/v1/customers/J-1/journey", json={"stage": "consideration", "reason": "asked for a quote"}, headers=auth("editor")
    )
    assert response.status_code == 201, response.get_json()
    transition = response.get_json()
    assert (transition["from_stage"], transition["to_stage"], transition["source"]) == ("awareness", "consideration", "manual")
    assert transition["actor"] == "key:test-editor" and transition["reason"] == "asked for a quote"
    assert transition["rule_id"] is None and transition["customer_id"] == "J-1" and transition["id"]
    journey = _journey(client, auth)
    assert journey["stage"] == "consideration" and journey["since"] == transition["at"]
    assert journey["history"][0] == transition

    post = lambda body, cid="J-1": client.post(f"/api/v1/customers/{cid}/journey", json=body, headers=auth("editor"))  # noqa: E731
    same = post({"stage": "consideration", "reason": "again"})
    assert same.status_code == 409 and same.get_json()["code"] == "journey_stage_unchanged"
    assert "stage" in same.get_json()["errors"]
    bad = post({"stage": "vip", "reason": "not a stage"})
    assert bad.status_code == 422 and bad.get_json()["code"] == "journey_stage_invalid"
    assert "awareness" in bad.get_json()["errors"]["stage"][0]
    for body in ({"stage": "purchase"}, {"stage": "purchase", "reason": ""}, {"stage": "purchase", "reason": "   "}):
        missing = post(body)
        assert missing.status_code == 422 and "reason" in missing.get_json()["errors"], (body, missing.get_json())
    assert post({"reason": "no stage"}).get_json()["errors"].keys() == {"stage"}
    unknown = post({"stage": "purchase", "reason": "who?"}, cid="NOPE")
    assert unknown.status_code == 404 and unknown.get_json()["code"] == "customer_not_found"
    assert len(_journey(client, auth)["history"]) == 2  # no refused call recorded anything


def test_an_unknown_customer_is_a_json_404(client, auth):
    response = client.get("/api/v1/customers/NOPE/journey", headers=auth("analyst"))
    assert response.status_code == 404 and response.get_json()["code"] == "customer_not_found"


def test_a_manual_move_of_a_customer_without_a_state_row_makes_one(client, auth, customer, database):
    with database.connection(write=True) as conn:  # as a customer imported before state rows existed
        conn.exec_driver_sql("DELETE FROM customer_state")
    moved = client.post(
        "/api/v1/customers/J-1/journey", json={"stage": "awareness", "reason": "met at the fair"}, headers=auth("editor")
    )
    assert moved.status_code == 201 and moved.get_json()["from_stage"] is None
    assert _journey(client, auth)["stage"] == "awareness"


def test_the_journey_routes_need_a_key_and_the_right_role(client, auth, customer):
    reads = ["/api/v1/customers/J-1/journey", "/api/v1/journeys/statistics", "/api/v1/journeys/transitions"]
    for path in reads:
        refused = client.get(path)
        assert refused.status_code == 401 and refused.get_json()["code"] == "missing_api_key", path
        assert client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401, path
        # Read as the customer routes and the lifecycle statistics are: every role with customers:read.
        for role in ("channel", "analyst", "ingest", "editor"):
            assert client.get(path, headers=auth(role)).status_code == 200, (path, role)
    body = {"stage": "consideration", "reason": "from the call centre"}
    assert client.post("/api/v1/customers/J-1/journey", json=body).status_code == 401
    for role in ("channel", "analyst", "ingest"):  # a manual move is an analytics write, as a manual lifecycle stage
        refused = client.post("/api/v1/customers/J-1/journey", json=body, headers=auth(role))
        assert refused.status_code == 403 and refused.get_json()["code"] == "forbidden", role
    assert _journey(client, auth)["history"] == []
    assert client.post("/api/v1/customers/J-1/journey", json=body, headers=auth("admin")).status_code == 201


# --- statistics against a small base computed by hand -------------------------------------------

# Each customer's journey as (stage, days after BASE), moved through the service the console calls.
SCENARIO = {
    "S-A": [("awareness", 0), ("consideration", 2), ("purchase", 6), ("loyalty", 16)],
    "S-B": [("awareness", 0), ("consideration", 4)],
    "S-C": [("awareness", 0), ("purchase", 1), ("dormant", 11)],  # bought without considering, then went quiet
    "S-D": [("awareness", 0)],
    "S-E": [],  # never evaluated
}


@pytest.fixture
def scenario(client, auth, app, database):
    for cid, moves in SCENARIO.items():
        assert client.post("/api/v1/customers", json={"external_id": cid}, headers=auth("admin")).status_code == 201
        for stage, day in moves:
            with database.connection(write=True) as conn:
                service.move(
                    conn,
                    cid,
                    stage,
                    revision=app.extensions["rulebook"].current,
                    actor="test",
                    reason="scenario",
                    now=BASE + dt.timedelta(days=day),
                )


def _statistics(client, auth, since, until):
    query = f"?since={_iso(BASE + dt.timedelta(days=since))}&until={_iso(BASE + dt.timedelta(days=until))}"
    response = client.get(f"/api/v1/journeys/statistics{query}", headers=auth("analyst"))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_statistics_of_a_small_base_match_the_hand_count(client, auth, scenario):
    stats = _statistics(client, auth, 0, 30)
    assert stats["distribution"] == [
        {"stage": "awareness", "customers": 1, "share": 0.25},  # S-D
        {"stage": "consideration", "customers": 1, "share": 0.25},  # S-B
        {"stage": "purchase", "customers": 0, "share": 0.0},
        {"stage": "loyalty", "customers": 1, "share": 0.25},  # S-A
        {"stage": "dormant", "customers": 1, "share": 0.25},  # S-C
    ]
    assert stats["not_evaluated"] == 1  # S-E
    # Reached = ever at the step or a later one: S-C passed consideration on the way to buying.
    assert stats["funnel"] == [
        {"stage": "awareness", "reached": 4, "conversion_to_next": 0.75},  # A B C D -> A B C
        {"stage": "consideration", "reached": 3, "conversion_to_next": 0.6667},  # A B C -> A C
        {"stage": "purchase", "reached": 2, "conversion_to_next": 0.5},  # A C -> A
        {"stage": "loyalty", "reached": 1, "conversion_to_next": None},
    ]
    # Completed stays: awareness A 2, B 4, C 1 days; consideration A 4; purchase A 10, C 10.
    assert stats["time_in_stage"] == [
        {"stage": "awareness", "stays": 3, "median_days": 2.0},
        {"stage": "consideration", "stays": 1, "median_days": 4.0},
        {"stage": "purchase", "stays": 2, "median_days": 10.0},
        {"stage": "loyalty", "stays": 0, "median_days": None},
        {"stage": "dormant", "stays": 0, "median_days": None},
    ]
    moves = stats["transitions"]
    assert moves["total"] == 10 and moves["by_source"] == {"event": 0, "bulk": 0, "manual": 10}
    assert {(m["from"], m["to"]): m["count"] for m in moves["matrix"]} == {
        (None, "awareness"): 4,
        ("awareness", "consideration"): 2,
        ("awareness", "purchase"): 1,
        ("consideration", "purchase"): 1,
        ("purchase", "loyalty"): 1,
        ("purchase", "dormant"): 1,
    }
    assert moves["matrix"][0] == {"from": None, "to": "awareness", "count": 4}
    assert stats["since"].startswith("2025-03-01T00:00:00") and stats["until"].startswith("2025-03-31T00:00:00")


def test_statistics_of_a_period_count_only_its_moves_and_the_stays_they_end(client, auth, scenario):
    stats = _statistics(client, auth, 3, 12)  # B's move on day 4, A's on day 6, C's on day 11
    assert {(m["from"], m["to"]): m["count"] for m in stats["transitions"]["matrix"]} == {
        ("awareness", "consideration"): 1,
        ("consideration", "purchase"): 1,
        ("purchase", "dormant"): 1,
    }
    medians = {s["stage"]: (s["stays"], s["median_days"]) for s in stats["time_in_stage"]}
    assert medians["awareness"] == (1, 4.0) and medians["consideration"] == (1, 4.0) and medians["purchase"] == (1, 10.0)
    # The distribution and the funnel are of now and of all history, whatever the period.
    assert [f["reached"] for f in stats["funnel"]] == [4, 3, 2, 1]
    empty = _statistics(client, auth, 100, 130)
    assert empty["transitions"] == {"total": 0, "by_source": {"event": 0, "bulk": 0, "manual": 0}, "matrix": []}
    assert all(s["stays"] == 0 for s in empty["time_in_stage"])


def test_transitions_of_everyone_filter_by_stage_and_period(client, auth, scenario):
    get = lambda query: client.get(f"/api/v1/journeys/transitions{query}", headers=auth("analyst"))  # noqa: E731
    page = get("?from_stage=awareness&to_stage=consideration").get_json()
    assert sorted(t["customer_id"] for t in page["items"]) == ["S-A", "S-B"] and page["next_cursor"] is None
    period = f"?since={_iso(BASE + dt.timedelta(days=3))}&until={_iso(BASE + dt.timedelta(days=12))}&limit=2"
    first = get(period).get_json()
    assert [t["customer_id"] for t in first["items"]] == ["S-C", "S-A"] and first["next_cursor"]  # newest first, by time
    rest = get(f"{period}&cursor={first['next_cursor']}").get_json()
    assert [t["customer_id"] for t in rest["items"]] == ["S-B"] and rest["next_cursor"] is None
    assert rest["items"][0]["actor"] == "test" and rest["items"][0]["reason"] == "scenario"


def test_a_period_must_end_after_it_starts(client, auth):
    for path in ("/api/v1/journeys/statistics", "/api/v1/journeys/transitions"):
        for since, until in (("2025-03-02T00:00:00Z", "2025-03-01T00:00:00Z"), ("2025-03-01T00:00:00Z",) * 2):
            response = client.get(f"{path}?since={since}&until={until}", headers=auth("analyst"))
            assert response.status_code == 422, (path, response.get_json())
            assert response.get_json()["code"] == "period_invalid" and "since" in response.get_json()["errors"]
        unknown = client.get(f"{path}?sinse=2025-03-01T00:00:00Z", headers=auth("analyst"))
        assert unknown.status_code == 422 and unknown.get_json()["code"] == "validation_error"
    assert client.get("/api/v1/journeys/statistics?until=1900-01-01", headers=auth("analyst")).status_code == 422


def test_statistics_default_to_the_last_30_days(client, auth, customer):
    _touch(client, auth, "app_open", 1)
    stats = client.get("/api/v1/journeys/statistics", headers=auth("channel")).get_json()
    since, until = (dt.datetime.fromisoformat(stats[k]) for k in ("since", "until"))
    assert until - since == dt.timedelta(days=30)
    assert stats["transitions"]["by_source"]["event"] == 1
    assert stats["distribution"][0] == {"stage": "awareness", "customers": 1, "share": 1.0}
