"""Concurrent writers: no errors, no lost or doubled events, on both databases."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor


def test_concurrent_retries_of_one_transaction_store_it_once(app, auth):
    admin = auth("admin")
    assert app.test_client().post("/api/v1/customers", json={"external_id": "C-1"}, headers=admin).status_code == 201
    body = {"external_id": "T-same", "customer_id": "C-1", "occurred_at": "2026-01-01T00:00:00Z", "amount": "9.99"}

    def post(_):
        return app.test_client().post("/api/v1/transactions", json=body, headers=admin).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(post, range(24)))
    assert sorted(statuses) == [200] * 23 + [201]
    state = app.test_client().get("/api/v1/customers/C-1", headers=admin).get_json()["state"]
    assert state["transaction_count"] == 1 and state["total_spend"] == "9.99"


def test_concurrent_distinct_writes_are_all_counted(app, auth):
    admin = auth("admin")
    client = app.test_client()
    for c in range(2):
        assert client.post("/api/v1/customers", json={"external_id": f"C-{c}"}, headers=admin).status_code == 201

    def post(n):
        body = {"external_id": f"T-{n}", "customer_id": f"C-{n % 2}", "occurred_at": "2026-01-01T00:00:00Z", "amount": "1.01"}
        return app.test_client().post("/api/v1/transactions", json=body, headers=admin).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(post, range(80)))
    assert statuses == [201] * 80
    for c in range(2):
        state = client.get(f"/api/v1/customers/C-{c}", headers=admin).get_json()["state"]
        assert state["transaction_count"] == 40 and state["total_spend"] == "40.40"
