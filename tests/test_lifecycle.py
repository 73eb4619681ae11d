"""Lifecycle: the event path moves a stage at once and records why; bulk runs; manual changes."""

from __future__ import annotations

import datetime as dt

import pytest


def _now(days_ago: float = 0) -> str:
    return (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days_ago)).isoformat()


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
