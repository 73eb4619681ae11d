"""The offer catalog over the API: validation, treatments, filters, the demo catalog."""

from __future__ import annotations

import pytest

from decision_server.config import DEFAULT_CHANNELS
from decision_server.offers import service, treatments

BASE = {"code": "UP1", "name": "Upgrade", "category": "upsell", "business_value": 12.5}


def _post(client, auth, body, role="editor"):
    return client.post("/api/v1/offers", json=body, headers=auth(role))


def test_create_read_change_and_list_an_offer(client, auth):
    body = {
        **BASE,
        "target_stages": ["growth"],
        "product_category": "data_bundle",
        "treatments": {
            "sms": {"text": "Hi {first_name}, upgrade now!"},
            "app": {"title": "Upgrade", "body": "Go big, {first_name}"},
        },
    }
    created = _post(client, auth, body)
    assert created.status_code == 201, created.get_json()
    offer = created.get_json()
    assert offer["status"] == "active" and offer["points_cost"] == 0 and offer["target_segments"] == []
    changed = client.patch(
        f"/api/v1/offers/{offer['id']}", json={"status": "paused", "business_value": 3}, headers=auth("editor")
    )
    assert changed.status_code == 200 and changed.get_json()["status"] == "paused" and changed.get_json()["business_value"] == 3
    assert client.get(f"/api/v1/offers/{offer['id']}", headers=auth("channel")).get_json()["name"] == "Upgrade"
    listed = client.get("/api/v1/offers?status=paused", headers=auth("analyst")).get_json()
    assert [o["code"] for o in listed["items"]] == ["UP1"]
    assert client.get("/api/v1/offers?status=active", headers=auth("analyst")).get_json()["items"] == []


@pytest.mark.parametrize(
    "change,field",
    [
        ({"category": "upsel"}, "category"),
        ({"target_stages": ["grwoth"]}, "target_stages"),
        ({"target_segments": ["gold"]}, "target_segments"),
        ({"product_category": "cars"}, "product_category"),
        ({"treatments": {"fax": {"text": "hi"}}}, "treatments.fax"),
        ({"treatments": {"sms": {"text": "x" * 161}}}, "treatments.sms.text"),
        ({"treatments": {"sms": {"text": "{first_name.__class__} hi"}}}, "treatments.sms.text"),
        ({"treatments": {"sms": {"text": "Hi {name}"}}}, "treatments.sms.text"),
        ({"treatments": {"app": {"title": "no body"}}}, "treatments.app.body"),
        ({"treatments": {"app": {"title": "t", "body": "b", "image_url": "cdn/img.png"}}}, "treatments.app.image_url"),
        ({"valid_from": "2027-01-01T00:00:00Z", "valid_to": "2026-01-01T00:00:00Z"}, "valid_to"),
        ({"business_value": 0}, "business_value"),
        ({"business_value": "NaN"}, "business_value"),
        ({"points_cost": -1}, "points_cost"),
        ({"external_id": "X1"}, "external_system"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_offer_is_refused_naming_the_field(client, auth, change, field):
    response = _post(client, auth, {**BASE, **change})
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["errors"], response.get_json()


def test_an_sms_is_checked_with_room_for_the_name_and_never_sent_longer_than_160():
    text = "Hi {first_name}! " + "x" * (160 - len("Hi ! ") - treatments.PLACEHOLDERS["first_name"])
    assert treatments.check("sms", {"text": text}) == {}
    assert "text" in treatments.check("sms", {"text": text + "x"})
    short = treatments.render("sms", {"text": text}, {"first_name": "Ana"})["text"]
    assert short.startswith("Hi Ana! ") and len(short) < 160
    long_name = treatments.render("sms", {"text": text}, {"first_name": "A" * 60})["text"]
    assert long_name.startswith("Hi there! ") and len(long_name) <= 160
    assert treatments.render("sms", {"text": "Hi {first_name}"}, {})["text"] == "Hi there"
    assert treatments.render("sms", {"text": "{{literal}} {offer_code}"}, {"offer_code": "X"})["text"] == "{literal} X"


def test_duplicates_are_conflicts(client, auth):
    assert _post(client, auth, BASE).status_code == 201
    again = _post(client, auth, {**BASE, "name": "Other"})
    assert again.status_code == 409 and again.get_json()["code"] == "offer_exists" and "code" in again.get_json()["errors"]
    first = _post(client, auth, {**BASE, "code": "E1", "external_id": "X1", "external_system": "xiva"})
    assert first.status_code == 201
    assert _post(client, auth, {**BASE, "code": "E2", "external_id": "X1", "external_system": "xiva"}).status_code == 409


def test_a_category_added_to_the_rules_is_accepted(client, auth, app, rules_dir):
    assert _post(client, auth, {**BASE, "category": "referral"}).status_code == 422
    path = rules_dir / "offers.yaml"
    path.write_text(path.read_text().replace("vip, win_back, retention]}", "vip, win_back, retention, referral]}", 1))
    app.extensions["rulebook"].sync()
    assert app.extensions["rulebook"].status()["folder"]["refused"] is None
    assert _post(client, auth, {**BASE, "category": "referral"}).status_code == 201


def test_filters_by_target_stage_and_segment_include_offers_for_anyone(client, auth, database):
    with database.session(write=True) as session:
        assert service.load_demo_catalog(session, channels=DEFAULT_CHANNELS, words=service.vocabulary(None)) == 8
    page = client.get("/api/v1/offers?stage=churn_risk&limit=50", headers=auth("analyst")).get_json()
    assert [o["id"] for o in page["items"]] == [6, 7]
    high = client.get("/api/v1/offers?segment=high", headers=auth("analyst")).get_json()["items"]
    low = client.get("/api/v1/offers?segment=low", headers=auth("analyst")).get_json()["items"]
    assert 5 in [o["id"] for o in high] and 5 not in [o["id"] for o in low] and len(high) == 8
    first = client.get("/api/v1/offers?limit=3", headers=auth("analyst")).get_json()
    rest = client.get(f"/api/v1/offers?limit=10&cursor={first['next_cursor']}", headers=auth("analyst")).get_json()
    assert [o["id"] for o in first["items"] + rest["items"]] == list(range(8)) and rest["next_cursor"] is None
    # A new offer after the demo ids gets the next id, on PostgreSQL too (the sequence was moved on).
    assert _post(client, auth, BASE).get_json()["id"] == 8


def test_the_demo_catalog_loads_once_with_ids_0_to_7(database):
    with database.session(write=True) as session:
        words = service.vocabulary(None)
        assert service.load_demo_catalog(session, channels=DEFAULT_CHANNELS, words=words) == 8
        assert service.load_demo_catalog(session, channels=DEFAULT_CHANNELS, words=words) == 0
        offers = service.listing(session, limit=100)
    assert [o["id"] for o in offers] == list(range(8))
    assert {o["category"] for o in offers} == set(service.DEFAULT_VOCABULARY["category"])
    stages = {s for o in offers for s in o["target_stages"]}
    assert stages == set(service.DEFAULT_VOCABULARY["target_stages"])


def test_an_offer_is_deleted_only_when_unused_and_unknown_ids_are_404(client, auth):
    offer = _post(client, auth, BASE).get_json()
    assert client.delete(f"/api/v1/offers/{offer['id']}", headers=auth("editor")).status_code == 204
    missing = client.get(f"/api/v1/offers/{offer['id']}", headers=auth("editor"))
    assert missing.status_code == 404 and missing.get_json()["code"] == "offer_not_found"
