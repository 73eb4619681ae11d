"""Transactions and touchpoints over HTTP: idempotent writes, batches, state updates, bad input."""

from __future__ import annotations

import pytest


@pytest.fixture
def admin(client, auth):
    headers = auth("admin")
    for external_id in ("C-1", "C-2"):
        assert client.post("/api/v1/customers", json={"external_id": external_id}, headers=headers).status_code == 201
    return headers


def tx(**changes):
    return {"customer_id": "C-1", "occurred_at": "2026-03-01T10:00:00Z", "amount": "19.99", **changes}


def state(client, headers, customer="C-1"):
    return client.get(f"/api/v1/customers/{customer}", headers=headers).get_json()["state"]


def test_transaction_updates_the_customer_state_exactly(client, admin):
    first = client.post(
        "/api/v1/transactions", json=tx(external_id="T-1", cost="5.10", category="data_bundle", channel="app"), headers=admin
    )
    assert first.status_code == 201
    body = first.get_json()
    assert body["id"] == "T-1" and body["customer_id"] == "C-1" and body["amount"] == "19.99" and body["cost"] == "5.10"
    assert body["status"] == "created"
    client.post(
        "/api/v1/transactions", json=tx(external_id="T-2", amount=0.1, occurred_at="2026-03-05T10:00:00+01:00"), headers=admin
    )
    client.post("/api/v1/transactions", json=tx(external_id="T-3", amount=0.2, occurred_at="2026-02-01T10:00:00Z"), headers=admin)
    s = state(client, admin)
    # 19.99 + 0.10 + 0.20 must be exactly 20.29: money is never a float.
    assert s["transaction_count"] == 3 and s["total_spend"] == "20.29" and s["total_cost"] == "5.10"
    assert s["first_purchase_at"] == "2026-02-01T10:00:00+00:00"
    assert s["last_purchase_at"] == "2026-03-05T09:00:00+00:00"


def test_retried_transaction_is_stored_once(client, admin):
    first = client.post("/api/v1/transactions", json=tx(external_id="T-1"), headers=admin)
    again = client.post("/api/v1/transactions", json=tx(external_id="T-1"), headers=admin)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json()["status"] == "existing"
    assert state(client, admin)["transaction_count"] == 1


def test_same_id_with_other_content_is_a_conflict(client, admin):
    client.post("/api/v1/transactions", json=tx(external_id="T-1"), headers=admin)
    response = client.post("/api/v1/transactions", json=tx(external_id="T-1", amount="20.00"), headers=admin)
    assert response.status_code == 409
    assert response.get_json()["code"] == "transaction_conflict"
    assert "amount_cents" in response.get_json()["errors"]["external_id"][0]


def test_transaction_without_id_gets_one(client, admin):
    a = client.post("/api/v1/transactions", json=tx(), headers=admin).get_json()
    b = client.post("/api/v1/transactions", json=tx(), headers=admin).get_json()
    assert a["id"] != b["id"]
    assert state(client, admin)["transaction_count"] == 2


def test_batch_is_all_or_nothing(client, admin):
    bad = client.post(
        "/api/v1/transactions/batch",
        json={"items": [tx(external_id="T-1"), tx(external_id="T-2", customer_id="GHOST"), tx(external_id="T-3", amount="abc")]},
        headers=admin,
    )
    assert bad.status_code == 422
    assert "items.2.amount" in bad.get_json()["errors"]
    unknown = client.post(
        "/api/v1/transactions/batch",
        json={"items": [tx(external_id="T-1"), tx(external_id="T-2", customer_id="GHOST")]},
        headers=admin,
    )
    assert unknown.status_code == 422
    assert unknown.get_json()["code"] == "unknown_customer"
    assert list(unknown.get_json()["errors"]) == ["items.1.customer_id"]
    assert state(client, admin)["transaction_count"] == 0

    good = client.post(
        "/api/v1/transactions/batch",
        json={"items": [tx(external_id="T-1"), tx(external_id="T-2", customer_id="C-2"), tx(external_id="T-1")]},
        headers=admin,
    )
    assert good.status_code == 200
    assert (good.get_json()["created"], good.get_json()["existing"]) == (2, 1)
    assert state(client, admin)["transaction_count"] == 1 and state(client, admin, "C-2")["transaction_count"] == 1
    repeat = client.post("/api/v1/transactions/batch", json={"items": [tx(external_id="T-1")]}, headers=admin)
    assert repeat.get_json()["existing"] == 1


def test_batch_with_one_id_twice_and_different_content_is_refused(client, admin):
    response = client.post(
        "/api/v1/transactions/batch", json={"items": [tx(external_id="T-1"), tx(external_id="T-1", amount="1.00")]}, headers=admin
    )
    assert response.status_code == 422
    assert "items.1.external_id" in response.get_json()["errors"]


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"amount": "-100000000.01"}, "amount"),  # a refund may be negative, not unbounded
        ({"amount": "1.001"}, "amount"),
        ({"amount": "1e400"}, "amount"),
        ({"amount": "NaN"}, "amount"),
        ({"amount": "abc"}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": "1000000000"}, "amount"),
        ({"cost": "-100000000.01"}, "cost"),
        ({"occurred_at": "2026-13-01T00:00:00Z"}, "occurred_at"),
        ({"occurred_at": 1700000000}, "occurred_at"),
        ({"occurred_at": "9999-01-01T00:00:00Z"}, "occurred_at"),
        ({"category": "Data Bundle"}, "category"),
        ({"channel": "x" * 40}, "channel"),
        ({"product": "p" * 101}, "product"),
        ({"customer_id": None}, "customer_id"),
        ({"external_id": "no spaces allowed"}, "external_id"),
    ],
)
def test_bad_transaction_is_422_naming_the_field(client, admin, changes, field):
    response = client.post("/api/v1/transactions", json=tx(**changes), headers=admin)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["errors"]


def test_missing_fields_are_named(client, admin):
    response = client.post("/api/v1/transactions", json={}, headers=admin)
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == {"customer_id", "occurred_at", "amount"}


def test_unknown_customer_on_single_transaction(client, admin):
    response = client.post("/api/v1/transactions", json=tx(customer_id="GHOST"), headers=admin)
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"customer_id": ["no customer with this id"]}


@pytest.mark.parametrize("items", [[], "nope", [None]])
def test_bad_batches(client, admin, items):
    response = client.post("/api/v1/transactions/batch", json={"items": items}, headers=admin)
    assert response.status_code == 422


def test_batch_limit(client, admin):
    response = client.post("/api/v1/transactions/batch", json={"items": [tx()] * 1001}, headers=admin)
    assert response.status_code == 422 and "items" in response.get_json()["errors"]


def test_listing_is_newest_first_with_pages_and_filters(client, admin):
    for day in range(1, 8):
        client.post(
            "/api/v1/transactions",
            json=tx(external_id=f"T-{day}", occurred_at=f"2026-03-0{day}T10:00:00Z", category="device" if day % 2 else "roaming"),
            headers=admin,
        )
    seen, cursor = [], None
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/customers/C-1/transactions", query_string=query, headers=admin).get_json()
        seen += [t["id"] for t in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == [f"T-{day}" for day in range(7, 0, -1)]
    only = client.get(
        "/api/v1/customers/C-1/transactions",
        query_string={"category": "roaming", "occurred_from": "2026-03-03T00:00:00Z"},
        headers=admin,
    ).get_json()["items"]
    assert [t["id"] for t in only] == ["T-6", "T-4"]


def test_touchpoints_are_idempotent_and_counted(client, admin):
    tp = {
        "customer_id": "C-1",
        "occurred_at": "2026-03-01T10:00:00Z",
        "channel": "sms",
        "kind": "sms_click",
        "payload": {"campaign": "spring", "text": "¡Hola! 👋"},
        "external_id": "P-1",
    }
    assert client.post("/api/v1/touchpoints", json=tp, headers=admin).status_code == 201
    assert client.post("/api/v1/touchpoints", json=tp, headers=admin).status_code == 200
    changed = client.post("/api/v1/touchpoints", json={**tp, "payload": {}}, headers=admin)
    assert changed.status_code == 409 and changed.get_json()["code"] == "touchpoint_conflict"
    batch = client.post(
        "/api/v1/touchpoints/batch",
        json={"items": [{**tp, "external_id": "P-2", "occurred_at": "2026-04-01T00:00:00Z"}, tp]},
        headers=admin,
    )
    assert batch.get_json()["created"] == 1
    s = state(client, admin)
    assert s["touchpoint_count"] == 2 and s["last_touchpoint_at"] == "2026-04-01T00:00:00+00:00"
    listed = client.get("/api/v1/customers/C-1/touchpoints", query_string={"channel": "sms"}, headers=admin).get_json()
    assert [p["id"] for p in listed["items"]] == ["P-2", "P-1"]
    assert listed["items"][1]["payload"]["text"] == "¡Hola! 👋"


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"channel": None}, "channel"),
        ({"kind": "App Open"}, "kind"),
        ({"payload": "text"}, "payload"),
        ({"payload": {"x": "\u0000"}}, "payload.x"),  # the NUL is named where it is
        ({"occurred_at": ""}, "occurred_at"),
    ],
)
def test_bad_touchpoint_is_422(client, admin, changes, field):
    tp = {"customer_id": "C-1", "occurred_at": "2026-03-01T10:00:00Z", "channel": "app", "kind": "app_open", **changes}
    response = client.post("/api/v1/touchpoints", json=tp, headers=admin)
    assert response.status_code == 422
    assert field in response.get_json()["errors"]


@pytest.mark.parametrize(
    "path,body",
    [
        ("/api/v1/transactions", lambda at: tx(occurred_at=at)),
        ("/api/v1/touchpoints", lambda at: {"customer_id": "C-1", "occurred_at": at, "channel": "app", "kind": "app_open"}),
        ("/api/v1/customers", lambda at: {"external_id": "C-FUTURE", "created_at": at}),
    ],
)
def test_a_time_in_the_future_is_refused(client, admin, path, body):
    import datetime as dt

    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    response = client.post(path, json=body(tomorrow), headers=admin)
    assert response.status_code == 422
    field = "created_at" if path.endswith("customers") else "occurred_at"
    assert "is in the future" in response.get_json()["errors"][field][0]
    # A till whose clock runs a minute fast is fine.
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).isoformat()
    assert client.post(path, json=body(soon), headers=admin).status_code == 201
