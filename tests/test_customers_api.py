"""Customers over HTTP: create, update, get, list with filters and pages; every bad input is a 4xx."""

from __future__ import annotations

import pytest


@pytest.fixture
def admin(auth):
    return auth("admin")


def _create(client, headers, **body):
    response = client.post("/api/v1/customers", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_create_then_get_returns_the_customer_with_an_empty_state(client, admin):
    created = _create(
        client,
        admin,
        external_id="C-1",
        first_name="Zoë",
        last_name="Müller",
        email="zoe@example.com",
        phone="+44 20 7946 0958",
        consent={"sms": True, "app": False},
        attributes={"plan": "prepaid", "tags": ["a"]},
        created_at="2024-05-01T09:30:00+02:00",
    )
    fetched = client.get("/api/v1/customers/C-1", headers=admin).get_json()
    assert fetched == created
    assert fetched["first_name"] == "Zoë" and fetched["consent"] == {"sms": True, "app": False}
    assert fetched["created_at"] == "2024-05-01T07:30:00+00:00"
    assert fetched["state"]["transaction_count"] == 0 and fetched["state"]["total_spend"] == "0.00"


def test_duplicate_external_id_is_a_conflict(client, admin):
    _create(client, admin, external_id="C-1")
    response = client.post("/api/v1/customers", json={"external_id": "C-1"}, headers=admin)
    assert response.status_code == 409
    assert response.get_json()["code"] == "customer_exists"
    assert response.get_json()["errors"] == {"external_id": ["already exists"]}


def test_patch_merges_consent_and_attributes(client, admin):
    _create(
        client, admin, external_id="C-1", consent={"sms": True, "app": True}, attributes={"plan": "prepaid", "region": "north"}
    )
    response = client.patch(
        "/api/v1/customers/C-1",
        json={"first_name": "Ana", "consent": {"app": False, "sms": None}, "attributes": {"region": None, "vip": True}},
        headers=admin,
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["first_name"] == "Ana"
    assert body["consent"] == {"app": False}
    assert body["attributes"] == {"plan": "prepaid", "vip": True}


def test_unknown_customer_is_404(client, admin):
    for response in (
        client.get("/api/v1/customers/NOPE", headers=admin),
        client.patch("/api/v1/customers/NOPE", json={"first_name": "x"}, headers=admin),
        client.get("/api/v1/customers/NOPE/transactions", headers=admin),
    ):
        assert response.status_code == 404
        assert response.get_json()["code"] == "customer_not_found"


def test_list_pages_through_every_customer_once(client, admin):
    for i in range(7):
        _create(client, admin, external_id=f"C-{i}")
    seen, cursor = [], None
    while True:
        query = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/customers", query_string=query, headers=admin).get_json()
        assert len(page["items"]) <= 3
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"C-{i}" for i in range(7)]


def test_list_filters(client, admin):
    _create(
        client,
        admin,
        external_id="A-1",
        first_name="Ana",
        email="ana@x.org",
        consent={"sms": True},
        created_at="2024-01-01T00:00:00Z",
    )
    _create(
        client,
        admin,
        external_id="B-2",
        first_name="Ben",
        email="ben@x.org",
        consent={"sms": False},
        created_at="2025-01-01T00:00:00Z",
    )
    _create(client, admin, external_id="C-3", first_name="Cy", consent={"app": True}, created_at="2026-01-01T00:00:00Z")

    def ids(**query):
        return [c["id"] for c in client.get("/api/v1/customers", query_string=query, headers=admin).get_json()["items"]]

    assert ids(consent="sms") == ["A-1"]
    assert ids(q="BEN") == ["B-2"]
    assert ids(q="%") == []  # LIKE wildcards are literal
    assert ids(email="ANA@x.org") == ["A-1"]
    assert ids(created_from="2024-06-01T00:00:00Z") == ["B-2", "C-3"]
    assert ids(created_from="2024-06-01T00:00:00Z", created_to="2025-06-01T00:00:00Z") == ["B-2"]


@pytest.mark.parametrize(
    "body,field",
    [
        ({}, "external_id"),
        ({"external_id": ""}, "external_id"),
        ({"external_id": "has space"}, "external_id"),
        ({"external_id": "x" * 65}, "external_id"),
        ({"external_id": 123}, "external_id"),
        ({"external_id": "C-1", "email": "not-an-email"}, "email"),
        ({"external_id": "C-1", "phone": "call me"}, "phone"),
        ({"external_id": "C-1", "first_name": "x" * 101}, "first_name"),
        ({"external_id": "C-1", "first_name": "nul\u0000byte"}, "first_name"),
        ({"external_id": "C-1", "consent": {"sms": "yes"}}, "consent"),
        ({"external_id": "C-1", "consent": {"SMS!": True}}, "consent"),
        ({"external_id": "C-1", "consent": ["sms"]}, "consent"),
        ({"external_id": "C-1", "attributes": {"k": "\u0000"}}, "attributes"),
        ({"external_id": "C-1", "attributes": {"a": {"b": {"c": {"d": {"e": {"f": {}}}}}}}}, "attributes"),
        ({"external_id": "C-1", "attributes": {"big": 2**70}}, "attributes"),
        ({"external_id": "C-1", "created_at": "yesterday"}, "created_at"),
        ({"external_id": "C-1", "created_at": "1900-01-01T00:00:00Z"}, "created_at"),
        ({"external_id": "C-1", "id": 5}, "id"),
    ],
)
def test_bad_customer_is_422_naming_the_field(client, admin, body, field):
    response = client.post("/api/v1/customers", json=body, headers=admin)
    assert response.status_code == 422, response.get_json()
    error = response.get_json()
    assert error["code"] == "validation_error" and error["status"] == 422
    assert any(key == field or key.startswith(field + ".") for key in error["errors"]), error
    assert client.get("/api/v1/customers", headers=admin).get_json()["items"] == []


def test_nan_in_attributes_is_refused(client, admin):
    response = client.post(
        "/api/v1/customers",
        data='{"external_id": "C-1", "attributes": {"x": NaN}}',
        headers={**admin, "Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422)


@pytest.mark.parametrize(
    "query,field",
    [
        ({"limit": 0}, "query.limit"),
        ({"limit": 501}, "query.limit"),
        ({"limit": "ten"}, "query.limit"),
        ({"limit": 10**30}, "query.limit"),
        ({"cursor": "garbage"}, "query.cursor"),
        ({"created_from": "soon"}, "query.created_from"),
        ({"consent": "Bad Channel"}, "query.consent"),
        ({"unknown": "x"}, "query.unknown"),
    ],
)
def test_bad_list_query_is_422(client, admin, query, field):
    response = client.get("/api/v1/customers", query_string=query, headers=admin)
    assert response.status_code == 422
    assert field in response.get_json()["errors"]


def test_malformed_and_wrong_type_bodies(client, admin):
    broken = client.post("/api/v1/customers", data="{not json", headers={**admin, "Content-Type": "application/json"})
    assert broken.status_code == 400 and broken.get_json()["code"] == "invalid_json"
    listed = client.post("/api/v1/customers", json=[{"external_id": "C-1"}], headers=admin)
    assert listed.status_code == 422 and "body" in listed.get_json()["errors"]


def test_huge_payload_is_413(client, admin):
    response = client.post(
        "/api/v1/customers", json={"external_id": "C-1", "attributes": {"x": "a" * (5 * 1024 * 1024)}}, headers=admin
    )
    assert response.status_code == 413
    assert response.get_json()["code"] == "payload_too_large"


def test_unknown_path_and_method(client, admin):
    missing = client.get("/api/v1/nothing-here", headers=admin)
    assert missing.status_code == 404 and missing.get_json()["code"] == "not_found"
    wrong = client.delete("/api/v1/customers", headers=admin)
    assert wrong.status_code == 405 and wrong.get_json()["code"] == "method_not_allowed"


def test_request_id_is_echoed_or_made(client, admin):
    echoed = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    made = client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
    assert made.headers["X-Request-ID"] != "bad id with spaces" and len(made.headers["X-Request-ID"]) == 32


@pytest.mark.parametrize(
    "method,path,kwargs",
    [
        ("GET", "/api/v1/customers/a%00b", {}),
        ("PATCH", "/api/v1/customers/a%00b", {"json": {"first_name": "x"}}),
        ("GET", "/api/v1/customers/" + "x" * 5000, {}),
        ("GET", "/api/v1/customers/%F0%9F%98%80", {}),
        ("GET", "/api/v1/customers/a%00b/transactions", {}),
        ("GET", "/api/v1/customers", {"query_string": {"email": "a\x00b"}}),
        ("GET", "/api/v1/customers", {"query_string": {"cursor": "WzkyMjMzNzIwMzY4NTQ3NzU4MDg5XQ"}}),
        ("DELETE", "/api/v1/keys/99999999999999999999999", {}),
        ("GET", "/api/v1/customers", {"headers": {"Authorization": "Bearer ds_\x00\x00\x00\x00\x00\x00\x00\x00_x"}}),
        ("GET", "/api/v1/customers", {"headers": {"Authorization": "Bearer ds_ééééééé_x"}}),
    ],
)
def test_hostile_input_is_a_4xx_on_both_databases(client, admin, method, path, kwargs):
    kwargs = {"headers": admin, **kwargs}  # a fresh dict: the parameters are shared across backends
    response = client.open(path, method=method, **kwargs)
    assert 400 <= response.status_code < 500, response.get_json()
    assert response.get_json()["code"] != "internal_error"
