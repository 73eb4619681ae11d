"""The loyalty program over the API: earning on purchases at the tier's multiplier, upgrades, the ledger,
rewards and redemptions, cancellations, refunds, idempotency and the errors a client can cause."""

from __future__ import annotations

import datetime as dt

import pytest

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def no_seasonal_campaign(rules_dir):
    """Take December's double points out of this module's copy of the rules.

    These tests check the tier multiplier and the always-on earning rules on purchases made now;
    a campaign valid on the day the suite runs would double every figure. The rule's own cases
    (rules/earning.cases.yaml) check the campaign on its dates.
    """
    rule = (
        "  - id: december_double_points\n    description: Double points on every purchase in December.\n"
        "    when: true\n    then: {multiplier: 2}\n    valid_from: 2026-12-01\n    valid_to: 2027-01-01\n"
    )
    cases = rules_dir / "earning.cases.yaml"
    earning = rules_dir / "earning.yaml"
    assert rule in earning.read_text(), "rules/earning.yaml changed: update this fixture"
    earning.write_text(earning.read_text().replace(rule, ""))
    text = cases.read_text()
    start = text.index("  - name: December doubles the points, in the app too")
    end = text.index("  - name: December is over on the first of January")
    cases.write_text(text[:start] + text[end:])


def _at(days_ago: float = 0) -> str:
    return (NOW - dt.timedelta(days=days_ago)).isoformat()


@pytest.fixture
def member(client, auth):
    assert (
        client.post("/api/v1/customers", json={"external_id": "M-1", "first_name": "Ada"}, headers=auth("admin")).status_code
        == 201
    )
    return "M-1"


def _buy(client, auth, tid, amount, *, customer="M-1", days_ago=0.01, channel="store", refund_of=None):
    body = {"external_id": tid, "customer_id": customer, "occurred_at": _at(days_ago), "amount": amount, "channel": channel}
    if refund_of:
        body["refund_of"] = refund_of
    response = client.post("/api/v1/transactions", json=body, headers=auth("ingest"))
    assert response.status_code in (200, 201), response.get_json()
    return response


def _member(client, auth, customer="M-1"):
    response = client.get(f"/api/v1/loyalty/members/{customer}", headers=auth("channel"))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _ledger(client, auth, customer="M-1"):
    return client.get(f"/api/v1/loyalty/members/{customer}/ledger?limit=500", headers=auth("analyst")).get_json()["items"]


def _reward(client, auth, **fields):
    body = {"code": "CINEMA", "name": "Cinema ticket", "points_cost": 100, **fields}
    response = client.post("/api/v1/loyalty/rewards", json=body, headers=auth("editor"))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _redeem(client, auth, reward_id, key, customer="M-1"):
    return client.post(
        f"/api/v1/loyalty/members/{customer}/redemptions",
        json={"reward_id": reward_id, "idempotency_key": key, "channel": "app"},
        headers=auth("channel"),
    )


def test_a_first_purchase_enrols_and_earns_with_the_welcome_bonus(client, auth, member):
    _buy(client, auth, "T1", "50.00")
    got = _member(client, auth)
    assert got["tier"] == "bronze" and got["enrolled_via"] == "first_purchase"
    # 50.00 at bronze (x1.0) = 50 points, plus the 100-point welcome bonus of rules/earning.yaml.
    assert got["points"]["balance"] == 150 == got["points"]["ledger_sum"] == got["points"]["available"]
    [entry] = _ledger(client, auth)
    assert entry["kind"] == "earn" and entry["points"] == 150 and entry["details"]["rules"] == ["welcome_bonus"]
    assert entry["expires_at"] is not None  # 730 days for bronze (rules/loyalty_policy.yaml)
    # A repeated purchase (same id) earns nothing twice.
    assert _buy(client, auth, "T1", "50.00").status_code == 200
    assert _member(client, auth)["points"]["balance"] == 150


def test_points_follow_the_tier_multiplier_and_a_qualifying_purchase_upgrades_at_once(client, auth, member):
    _buy(client, auth, "T1", "10.00")  # 10 + 100 bonus = 110: bronze
    assert _member(client, auth)["tier"] == "bronze"
    _buy(client, auth, "T2", "900.00")  # 900 more: 1,010 earned in 12 months >= 1,000: silver, at once
    got = _member(client, auth)
    assert got["tier"] == "silver" and got["tier_definition"]["multiplier"] == 1.25
    assert [(c["from_tier"], c["to_tier"], c["source"]) for c in got["tier_history"]][:2] == [
        ("bronze", "silver", "event"),
        (None, "bronze", "enroll"),
    ]
    assert got["tier_history"][0]["rule_id"] == "silver"
    _buy(client, auth, "T3", "100.00")  # now at x1.25: 125 points
    assert _ledger(client, auth)[0]["points"] == 125
    assert _member(client, auth)["points"]["balance"] == 110 + 900 + 125


def test_an_app_purchase_earns_the_rule_multiplier_on_top_of_the_tier(client, auth, member):
    _buy(client, auth, "T1", "1.00")
    _buy(client, auth, "T2", "33.33", channel="app")  # floor(3333 cents x 1.0 x 1.1 / 100) = 36
    assert _ledger(client, auth)[0]["points"] == 36


def test_redeem_cancel_and_every_specific_error(client, auth, member):
    _buy(client, auth, "T1", "50.00")  # 150 points
    cheap = _reward(client, auth, stock=1)
    dear = _reward(client, auth, code="FLIGHT", name="Flight", points_cost=10_000)
    gold = _reward(client, auth, code="LOUNGE", name="Lounge", points_cost=10, tiers=["gold", "platinum"])
    paused = _reward(client, auth, code="OLD", name="Old", points_cost=10, status="paused")

    first = _redeem(client, auth, cheap["id"], "r-1")
    assert first.status_code == 201, first.get_json()
    assert first.get_json()["points"] == 100 and first.get_json()["status"] == "completed"
    again = _redeem(client, auth, cheap["id"], "r-1")  # the same key: the same redemption, nothing twice
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]
    assert _member(client, auth)["points"]["balance"] == 50

    for reward, key, code in (
        (cheap, "r-2", "reward_out_of_stock"),
        (dear, "r-3", "insufficient_points"),
        (gold, "r-4", "tier_not_allowed"),
        (paused, "r-5", "reward_unavailable"),
    ):
        response = _redeem(client, auth, reward["id"], key)
        assert response.status_code == 409 and response.get_json()["code"] == code, response.get_json()
        assert response.get_json()["errors"]["reward_id"]
    reused = _redeem(client, auth, dear["id"], "r-1")
    assert reused.status_code == 409 and reused.get_json()["code"] == "idempotency_conflict"
    assert _member(client, auth)["points"]["balance"] == 50  # refusals moved nothing

    rid = first.get_json()["id"]
    cancelled = client.post(
        f"/api/v1/loyalty/redemptions/{rid}/cancel", json={"reason": "changed their mind"}, headers=auth("channel")
    )
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    assert cancelled.get_json()["cancelled_by"].startswith("key:")
    assert (
        client.post(f"/api/v1/loyalty/redemptions/{rid}/cancel", json={"reason": "again"}, headers=auth("channel")).status_code
        == 200
    )
    assert _member(client, auth)["points"]["balance"] == 150  # returned once, not twice
    assert client.get(f"/api/v1/loyalty/rewards/{cheap['id']}", headers=auth("analyst")).get_json()["stock"] == 1
    kinds = [e["kind"] for e in _ledger(client, auth)]
    assert kinds == ["refund", "redeem", "earn"]
    assert sum(e["points"] for e in _ledger(client, auth)) == 150


def test_a_refund_takes_back_the_points_of_the_purchase_it_names(client, auth, member):
    _buy(client, auth, "T1", "10.00")  # 110 (bonus)
    _buy(client, auth, "T2", "80.00")  # 80
    _buy(client, auth, "R1", "-40.00", refund_of="T2")  # half of T2: 40 back
    assert _ledger(client, auth)[0]["kind"] == "reverse" and _ledger(client, auth)[0]["points"] == -40
    _buy(client, auth, "R2", "-60.00", refund_of="T2")  # more than is left of T2: only the other 40
    assert _ledger(client, auth)[0]["points"] == -40
    assert _member(client, auth)["points"]["balance"] == 110
    # A refund naming no purchase takes back points at today's rate.
    _buy(client, auth, "R3", "-5.00")
    assert _ledger(client, auth)[0]["points"] == -5
    # A refund is checked: it must be negative and name a purchase of the same customer.
    bad = client.post(
        "/api/v1/transactions",
        json={"customer_id": "M-1", "occurred_at": _at(), "amount": "5.00", "refund_of": "T1"},
        headers=auth("ingest"),
    )
    assert bad.status_code == 422 and "refund_of" in bad.get_json()["errors"]
    unknown = client.post(
        "/api/v1/transactions",
        json={"customer_id": "M-1", "occurred_at": _at(), "amount": "-5.00", "refund_of": "NOPE"},
        headers=auth("ingest"),
    )
    assert unknown.status_code == 422 and unknown.get_json()["errors"]["refund_of"] == ["no purchase with this id"]


def test_a_refund_after_the_points_were_spent_never_makes_the_balance_negative(client, auth, member):
    _buy(client, auth, "T1", "100.00")  # 200
    reward = _reward(client, auth, points_cost=180)
    assert _redeem(client, auth, reward["id"], "k").status_code == 201  # 20 left
    _buy(client, auth, "R1", "-100.00", refund_of="T1")
    entry = _ledger(client, auth)[0]
    assert entry["points"] == -20 and entry["details"]["shortfall"] == 180 and entry["balance_after"] == 0
    assert _member(client, auth)["points"]["balance"] == 0


def test_earn_and_adjust_are_idempotent_and_checked(client, auth, member):
    enrolled = client.post("/api/v1/loyalty/members/M-1/enroll", json={}, headers=auth("channel"))
    assert enrolled.status_code == 201 and enrolled.get_json()["tier"] == "bronze"
    assert client.post("/api/v1/loyalty/members/M-1/enroll", json={}, headers=auth("channel")).status_code == 200
    body = {"points": 300, "reason": "partner: hotel", "idempotency_key": "hotel-1"}
    first = client.post("/api/v1/loyalty/members/M-1/earn", json=body, headers=auth("channel"))
    assert first.status_code == 201 and first.get_json()["status"] == "created"
    repeat = client.post("/api/v1/loyalty/members/M-1/earn", json=body, headers=auth("channel"))
    assert repeat.status_code == 200 and repeat.get_json()["entry"]["id"] == first.get_json()["entry"]["id"]
    changed = client.post("/api/v1/loyalty/members/M-1/earn", json={**body, "points": 301}, headers=auth("channel"))
    assert changed.status_code == 409 and changed.get_json()["code"] == "idempotency_conflict"
    assert changed.get_json()["errors"]["idempotency_key"]
    assert _member(client, auth)["points"]["balance"] == 300

    # Adjusting is for admins, with a reason, never below zero.
    adjust = {"points": -500, "reason": "fraud", "idempotency_key": "adj-1"}
    assert client.post("/api/v1/loyalty/members/M-1/adjust", json=adjust, headers=auth("channel")).status_code == 403
    too_much = client.post("/api/v1/loyalty/members/M-1/adjust", json=adjust, headers=auth("admin"))
    assert too_much.status_code == 409 and too_much.get_json()["code"] == "insufficient_points"
    ok = client.post(
        "/api/v1/loyalty/members/M-1/adjust", json={**adjust, "points": -200, "idempotency_key": "adj-2"}, headers=auth("admin")
    )
    assert ok.status_code == 201 and ok.get_json()["entry"]["actor"].startswith("key:")
    assert _member(client, auth)["points"]["balance"] == 100

    for bad, field in (
        ({**body, "points": 0}, "points"),
        ({**body, "points": "10"}, "points"),
        ({**body, "idempotency_key": ""}, "idempotency_key"),
        ({"points": 5, "reason": "x"}, "idempotency_key"),
        ({**body, "extra": 1}, "extra"),
    ):
        response = client.post("/api/v1/loyalty/members/M-1/earn", json=bad, headers=auth("channel"))
        assert response.status_code == 422 and field in response.get_json()["errors"].get(
            "json", response.get_json()["errors"]
        ), response.get_json()


def test_not_members_and_unknown_customers(client, auth, member):
    response = client.post(
        "/api/v1/loyalty/members/M-1/earn", json={"points": 5, "reason": "x", "idempotency_key": "k"}, headers=auth("channel")
    )
    assert response.status_code == 409 and response.get_json()["code"] == "not_enrolled"
    assert client.get("/api/v1/loyalty/members/M-1", headers=auth("channel")).status_code == 409
    missing = client.get("/api/v1/loyalty/members/NOBODY", headers=auth("channel"))
    assert missing.status_code == 404 and missing.get_json()["code"] == "customer_not_found"
    assert (
        client.post(
            "/api/v1/loyalty/members/M-1/redemptions", json={"reward_id": 1, "idempotency_key": "k"}, headers=auth("channel")
        ).status_code
        == 409
    )


def test_auto_enrolment_can_be_switched_off(client, auth, member, app):
    import dataclasses

    app.extensions["config"] = dataclasses.replace(app.extensions["config"], loyalty_auto_enroll=False)
    _buy(client, auth, "T1", "50.00")
    assert client.get("/api/v1/loyalty/members/M-1", headers=auth("channel")).get_json()["code"] == "not_enrolled"


def test_tiers_are_managed_over_the_api(client, auth, member):
    listed = client.get("/api/v1/loyalty/tiers", headers=auth("channel")).get_json()["items"]
    assert [(t["name"], t["rank"], t["multiplier"], t["in_rules"]) for t in listed] == [
        ("bronze", 1, 1.0, True),
        ("silver", 2, 1.25, True),
        ("gold", 3, 1.5, True),
        ("platinum", 4, 2.0, True),
    ]
    made = client.post(
        "/api/v1/loyalty/tiers",
        json={"name": "diamond", "rank": 5, "multiplier": 3, "benefits": ["a butler"]},
        headers=auth("editor"),
    )
    assert made.status_code == 201 and made.get_json()["in_rules"] is False
    clash = client.post("/api/v1/loyalty/tiers", json={"name": "ruby", "rank": 5, "multiplier": 3}, headers=auth("editor"))
    assert clash.status_code == 409 and clash.get_json()["errors"] == {"rank": ["another tier has this rank"]}
    bronze = listed[0]["id"]
    changed = client.patch(f"/api/v1/loyalty/tiers/{bronze}", json={"multiplier": 1.5}, headers=auth("editor"))
    assert changed.status_code == 200 and changed.get_json()["multiplier"] == 1.5
    _buy(client, auth, "T1", "10.00")  # 10 x 1.5 + 100
    assert _ledger(client, auth)[0]["points"] == 115
    renamed = client.patch(f"/api/v1/loyalty/tiers/{bronze}", json={"name": "copper"}, headers=auth("editor"))
    assert renamed.status_code == 422 and renamed.get_json()["code"] == "tier_name_fixed"
    held = client.delete(f"/api/v1/loyalty/tiers/{bronze}", headers=auth("editor"))
    assert held.status_code == 409 and held.get_json()["code"] == "tier_in_use"
    gold = listed[2]["id"]
    in_rules = client.delete(f"/api/v1/loyalty/tiers/{gold}", headers=auth("editor"))
    assert in_rules.status_code == 409 and in_rules.get_json()["code"] == "tier_in_rules"
    assert client.delete(f"/api/v1/loyalty/tiers/{made.get_json()['id']}", headers=auth("editor")).status_code == 204
    assert (
        client.post("/api/v1/loyalty/tiers", json={"name": "x", "rank": 9, "multiplier": 0}, headers=auth("editor")).status_code
        == 422
    )
    assert (
        client.post("/api/v1/loyalty/tiers", json={"name": "x", "rank": 9, "multiplier": 2}, headers=auth("channel")).status_code
        == 403
    )


def test_rewards_are_validated_listed_and_filtered(client, auth, member):
    _reward(client, auth, code="A", points_cost=50, tiers=["gold"])
    _reward(client, auth, code="B", points_cost=500, stock=0)
    _reward(client, auth, code="C", points_cost=5000, valid_to=_at(1), valid_from=_at(10))
    for bad, field in (
        ({"tiers": ["tin"]}, "tiers"),
        ({"points_cost": 0}, "points_cost"),
        ({"stock": -1}, "stock"),
        ({"valid_from": _at(0), "valid_to": _at(2)}, "valid_to"),
    ):
        response = client.post(
            "/api/v1/loyalty/rewards", json={"code": "Z", "name": "Z", "points_cost": 5, **bad}, headers=auth("editor")
        )
        assert response.status_code == 422 and field in str(response.get_json()["errors"]), response.get_json()
    dup = client.post("/api/v1/loyalty/rewards", json={"code": "A", "name": "A", "points_cost": 5}, headers=auth("editor"))
    assert dup.status_code == 409
    codes = lambda q: [r["code"] for r in client.get(f"/api/v1/loyalty/rewards?{q}", headers=auth("channel")).get_json()["items"]]
    assert codes("") == ["A", "B", "C"]
    assert codes("tier=silver") == ["B", "C"]
    assert codes("available=true") == ["A"]
    assert codes("max_points=500") == ["A", "B"]
    first = client.get("/api/v1/loyalty/rewards?limit=2", headers=auth("channel")).get_json()
    rest = client.get(f"/api/v1/loyalty/rewards?limit=2&cursor={first['next_cursor']}", headers=auth("channel")).get_json()
    assert [r["code"] for r in first["items"] + rest["items"]] == ["A", "B", "C"] and rest["next_cursor"] is None
    assert client.get("/api/v1/loyalty/rewards?colour=red", headers=auth("channel")).status_code == 422


def test_statistics_and_lists(client, auth, member):
    _buy(client, auth, "T1", "50.00")
    reward = _reward(client, auth)
    _redeem(client, auth, reward["id"], "k")
    stats = client.get("/api/v1/loyalty/statistics", headers=auth("analyst")).get_json()
    assert stats["members"] == 1 and stats["points"]["outstanding"] == 50
    assert stats["points"]["by_kind"]["earn"] == {"entries": 1, "points": 150}
    assert stats["points"]["by_kind"]["redeem"] == {"entries": 1, "points": -100}
    assert stats["redemptions"]["top_rewards"] == [
        {"reward_id": reward["id"], "code": "CINEMA", "name": "Cinema ticket", "redemptions": 1, "points": 100}
    ]
    assert {"from": None, "to": "bronze", "source": "enroll", "count": 1} in stats["tier_changes"]
    members = client.get("/api/v1/loyalty/members?tier=bronze", headers=auth("analyst")).get_json()["items"]
    assert [m["customer_id"] for m in members] == ["M-1"]
    assert client.get("/api/v1/loyalty/members?tier=gold", headers=auth("analyst")).get_json()["items"] == []
    redemptions = client.get("/api/v1/loyalty/redemptions?customer_id=M-1", headers=auth("analyst")).get_json()["items"]
    assert [r["reward_code"] for r in redemptions] == ["CINEMA"]
    changes = client.get("/api/v1/loyalty/tier-changes?customer_id=M-1", headers=auth("analyst")).get_json()["items"]
    assert [c["to_tier"] for c in changes] == ["bronze"]


def test_tier_and_points_reach_the_360_view_and_decisions(client, auth, member):
    _buy(client, auth, "T1", "50.00")  # 150 points, bronze
    profile = client.get("/api/v1/customers/M-1/profile", headers=auth("analyst")).get_json()
    assert profile["tier"] == "bronze"
    loyalty = profile["loyalty"]
    assert loyalty["points"]["balance"] == 150 and loyalty["points"]["available"] == 150
    assert [e["kind"] for e in loyalty["recent_ledger"]] == ["earn"]
    assert dt.datetime.fromisoformat(loyalty["tier_since"]) <= dt.datetime.now(dt.UTC)
    # An offer costing more points than the member has is removed by rules/offers.yaml, with the reason.
    offer = {
        "code": "POINTS",
        "name": "Points deal",
        "category": "loyalty",
        "business_value": 5,
        "points_cost": 200,
        "treatments": {"app": {"title": "Deal", "body": "A deal for {points_cost} points"}},
    }
    assert client.post("/api/v1/offers", json=offer, headers=auth("editor")).status_code == 201
    decided = client.post("/api/v1/decisions", json={"customer_id": "M-1", "channel": "app"}, headers=auth("channel")).get_json()
    assert decided["customer"]["tier"] == "bronze" and decided["customer"]["points_balance"] == 150
    [candidate] = decided["explanation"]
    assert "not_enough_points" in [r["rule"] for r in candidate["removed_by"]]
    _buy(client, auth, "T2", "60.00")  # 210 points now: the offer is affordable
    decided = client.post("/api/v1/decisions", json={"customer_id": "M-1", "channel": "app"}, headers=auth("channel")).get_json()
    assert decided["customer"]["points_balance"] == 210
    assert "not_enough_points" not in [r["rule"] for r in decided["explanation"][0]["removed_by"]]
    # Someone who is not a member has no tier and no balance.
    client.post("/api/v1/customers", json={"external_id": "N-1"}, headers=auth("admin"))
    assert client.get("/api/v1/customers/N-1/profile", headers=auth("analyst")).get_json()["loyalty"] is None


def test_an_offer_can_be_kept_for_some_tiers_by_a_rule(client, auth, member, app, rules_dir):
    offer = {
        "code": "LOUNGE_UPGRADE",
        "name": "Lounge upgrade",
        "category": "loyalty",
        "business_value": 5,
        "treatments": {"app": {"title": "Lounge", "body": "Upgrade"}},
    }
    assert client.post("/api/v1/offers", json=offer, headers=auth("editor")).status_code == 201
    path = rules_dir / "offers.yaml"
    path.write_text(
        path.read_text().replace(
            "rules:\n",
            "rules:\n  - id: lounge_for_gold_and_up\n"
            "    description: The lounge upgrade is for gold and platinum members.\n"
            '    when: offer.code == "LOUNGE_UPGRADE" and (tier is missing or tier not in ["gold", "platinum"])\n'
            '    then: {check: eligibility, reason: "Gold and platinum members only."}\n',
            1,
        )
    )
    app.extensions["rulebook"].sync()
    assert app.extensions["rulebook"].status()["folder"]["refused"] is None, app.extensions["rulebook"].status()

    def removed_by():
        decided = client.post(
            "/api/v1/decisions", json={"customer_id": "M-1", "channel": "app"}, headers=auth("channel")
        ).get_json()
        return [r["rule"] for r in decided["explanation"][0]["removed_by"]]

    _buy(client, auth, "T1", "10.00")
    assert "lounge_for_gold_and_up" in removed_by()
    _buy(client, auth, "T2", "4000.00")  # 4,000 more points earned in 12 months: gold at once
    assert _member(client, auth)["tier"] == "gold"
    assert "lounge_for_gold_and_up" not in removed_by()


def test_an_admin_gives_a_tier_by_hand_with_a_reason(client, auth, member):
    _buy(client, auth, "T1", "10.00")
    body = {"tier": "gold", "reason": "status match: partner airline"}
    assert client.post("/api/v1/loyalty/members/M-1/tier", json=body, headers=auth("editor")).status_code == 403
    given = client.post("/api/v1/loyalty/members/M-1/tier", json=body, headers=auth("admin"))
    assert given.status_code == 200 and given.get_json()["tier"] == "gold"
    change = given.get_json()["tier_history"][0]
    assert (change["from_tier"], change["to_tier"], change["source"], change["reason"]) == (
        "bronze",
        "gold",
        "manual",
        "status match: partner airline",
    )
    assert change["actor"].startswith("key:")
    _buy(client, auth, "T2", "10.00")  # earns at gold's multiplier now
    assert _ledger(client, auth)[0]["points"] == 15
    bad = client.post("/api/v1/loyalty/members/M-1/tier", json={"tier": "tin", "reason": "x"}, headers=auth("admin"))
    assert bad.status_code == 422 and bad.get_json()["code"] == "tier_invalid" and "tier" in bad.get_json()["errors"]
