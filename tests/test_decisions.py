"""POST /api/v1/decisions and responses: ranking, explanation, contact policy, learning, the log."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from decision_server.config import DEFAULT_CHANNELS
from decision_server.decisions.records import (
    DecisionActionRecord,
    DecisionRecord,
    OfferLearningRecord,
)
from decision_server.offers import service as offers

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def demo(app, client, auth, database):
    """The demo catalog and three customers: growth (4 purchases), onboarding (1), no purchase yet."""
    with database.session(write=True) as session:
        offers.load_demo_catalog(session, channels=DEFAULT_CHANNELS, words=offers.vocabulary(None))
    app.extensions["catalog"].sync()
    people = {"GROW": ("Ana", 4, {"sms": True, "app": True}), "NEW": ("Bo", 1, {"sms": False}), "ZERO": (None, 0, {})}
    for external_id, (name, purchases, consent) in people.items():
        body = {"external_id": external_id, "consent": consent} | ({"first_name": name} if name else {})
        assert client.post("/api/v1/customers", json=body, headers=auth("admin")).status_code == 201
        for i in range(purchases):
            when = (NOW - dt.timedelta(days=20 - i)).isoformat()
            tx = {
                "external_id": f"{external_id}-{i}",
                "customer_id": external_id,
                "occurred_at": when,
                "amount": "25.00",
                "category": "data_bundle",
            }
            assert client.post("/api/v1/transactions", json=tx, headers=auth("admin")).status_code == 201
    return client


def decide(client, auth, customer_id="GROW", channel="app", **extra):
    response = client.post(
        "/api/v1/decisions", json={"customer_id": customer_id, "channel": channel, **extra}, headers=auth("channel")
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def by_code(decision):
    return {c["code"]: c for c in decision["explanation"]}


def test_a_decision_is_ranked_explained_and_logged_on_every_channel(demo, auth, database):
    for channel, kind in DEFAULT_CHANNELS.items():
        answer = decide(demo, auth, channel=channel, actions=3, context={"intent": "browse"})
        assert answer["customer"]["stage"] == "growth" and answer["prospect"] is False
        assert len(answer["explanation"]) == 8 and answer["revision"] and set(answer["models"]) >= {"churn", "nbo"}
        eligible = sorted((c for c in answer["explanation"] if c["eligible"]), key=lambda c: (-c["priority"], c["offer_id"]))
        assert [a["offer"]["id"] for a in answer["actions"]] == [c["offer_id"] for c in eligible[:3]]
        for action in answer["actions"]:
            f = action["factors"]
            assert action["priority"] == pytest.approx(
                f["propensity"] * f["context_weight"] * f["business_value"] * f["levers"], rel=1e-5
            )
            assert action["treatment"]["kind"] == kind
        for candidate in answer["explanation"]:
            assert candidate["eligible"] == (candidate["removed_by"] == [])
            assert all(r["reason"] and r["rule"] for r in candidate["removed_by"])
        assert "wrong_stage" in [r["rule"] for r in by_code(answer)["WELCOME10"]["removed_by"]]
        logged = demo.get(f"/api/v1/decisions/{answer['decision_id']}", headers=auth("analyst")).get_json()
        assert logged["candidates"] == answer["explanation"] and logged["channel"] == channel
        assert [a["offer_id"] for a in logged["actions"]] == [a["offer"]["id"] for a in answer["actions"]]
    with database.connection() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(DecisionRecord)).scalar() == 3


def test_the_treatment_is_rendered_for_the_customer(demo, auth):
    sms = decide(demo, auth, channel="sms")["actions"][0]["treatment"]
    assert sms["kind"] == "sms" and "Ana" in sms["text"] and len(sms["text"]) <= 160
    # (the offer just made by SMS is cooling down, so the app shows others)
    app_answer = decide(demo, auth, actions=3)
    assert app_answer["actions"] and all("Ana" in a["treatment"]["body"] for a in app_answer["actions"])


def test_an_unknown_customer_gets_a_prospect_answer(demo, auth):
    answer = decide(demo, auth, customer_id="SOMEONE-NEW", channel="app")
    assert answer["prospect"] is True and answer["customer"]["stage"] == "acquisition"
    assert [a["offer"]["code"] for a in answer["actions"]] == ["WELCOME10"]
    assert (
        answer["actions"][0]["treatment"]["body"].endswith("there, take 10% off your first data bundle.")
        or "there" in answer["actions"][0]["treatment"]["body"]
    )
    # By SMS nothing: consent to marketing SMS is unknown for a prospect.
    sms = decide(demo, auth, customer_id="SOMEONE-NEW", channel="sms")
    assert sms["actions"] == [] and "sms_needs_consent" in [r["rule"] for r in by_code(sms)["WELCOME10"]["removed_by"]]


def test_sms_needs_consent_and_at_most_one_a_day(demo, auth):
    refused = decide(demo, auth, customer_id="NEW", channel="sms")
    assert refused["actions"] == [] and all(
        "sms_needs_consent" in [r["rule"] for r in c["removed_by"]] for c in refused["explanation"]
    )
    first = decide(demo, auth, channel="sms")
    assert len(first["actions"]) == 1
    second = decide(demo, auth, channel="sms")
    assert second["actions"] == []
    assert all("sms_daily_limit" in [r["rule"] for r in c["removed_by"]] for c in second["explanation"])


def test_declines_and_cool_down_change_the_next_decision(demo, auth):
    first = decide(demo, auth, channel="call_centre")
    top = first["actions"][0]["offer"]["id"]
    # The agent is exempt from the cool-down: the same offer may come again at once.
    again = decide(demo, auth, channel="call_centre")
    assert again["actions"][0]["offer"]["id"] == top
    for decision in (first, again):
        assert (
            demo.post(
                f"/api/v1/decisions/{decision['decision_id']}/responses", json={"response": "declined"}, headers=auth("channel")
            ).status_code
            == 201
        )
    after = decide(demo, auth, channel="call_centre")
    removed = {c["offer_id"]: [r["rule"] for r in c["removed_by"]] for c in after["explanation"]}
    assert "declined_twice" in removed[top] and top not in [a["offer"]["id"] for a in after["actions"]]
    # In the app the offers made in the last two days are cooling down.
    app_answer = decide(demo, auth, channel="app")
    assert "cool_down" in removed_rules(app_answer, top)


def removed_rules(answer, offer_id):
    return [r["rule"] for c in answer["explanation"] if c["offer_id"] == offer_id for r in c["removed_by"]]


def test_context_weights_follow_the_intent(demo, auth):
    upgrade = by_code(decide(demo, auth, channel="app", context={"intent": "upgrade"}))["UPSELL_UNLIMITED"]["factors"]
    plain = by_code(decide(demo, auth, channel="call_centre", context={"intent": "billing"}))
    assert upgrade["context_weight"] == 2 and "upgrade_when_asking" in [w["rule"] for w in upgrade["weights"]]
    assert "no_selling_on_complaint" in [r["rule"] for r in plain["UPSELL_UNLIMITED"]["removed_by"]]


def test_responses_are_idempotent_and_checked(demo, auth):
    answer = decide(demo, auth, actions=2)
    url = f"/api/v1/decisions/{answer['decision_id']}/responses"
    first_offer = answer["actions"][0]["offer"]["id"]
    ambiguous = demo.post(url, json={"response": "accepted"}, headers=auth("channel"))
    assert ambiguous.status_code == 422 and "offer_id" in ambiguous.get_json()["errors"]
    stranger = demo.post(url, json={"response": "accepted", "offer_id": 999}, headers=auth("channel"))
    assert stranger.status_code == 422 and "offer_id" in stranger.get_json()["errors"]
    made = demo.post(url, json={"response": "accepted", "offer_id": first_offer}, headers=auth("channel"))
    repeat = demo.post(url, json={"response": "accepted", "offer_id": first_offer}, headers=auth("channel"))
    assert made.status_code == 201 and repeat.status_code == 200 and made.get_json() == repeat.get_json()
    decided = dt.datetime.now(dt.UTC)  # not the module's NOW: the suite may reach this test minutes after import
    late = demo.post(
        url,
        json={"response": "clicked", "offer_id": first_offer, "occurred_at": (decided + dt.timedelta(seconds=1)).isoformat()},
        headers=auth("channel"),
    )
    assert late.status_code == 201
    early = demo.post(
        url,
        json={"response": "ignored", "offer_id": first_offer, "occurred_at": (decided - dt.timedelta(days=1)).isoformat()},
        headers=auth("channel"),
    )
    assert early.status_code == 422 and "occurred_at" in early.get_json()["errors"]
    future = demo.post(
        url,
        json={"response": "ignored", "offer_id": first_offer, "occurred_at": (decided + dt.timedelta(days=1)).isoformat()},
        headers=auth("channel"),
    )
    assert future.status_code == 422
    assert demo.post(url, json={"response": "loved"}, headers=auth("channel")).status_code == 422
    missing = demo.post(
        "/api/v1/decisions/0123456789abcdef0123456789abcdef/responses", json={"response": "accepted"}, headers=auth("channel")
    )
    assert missing.status_code == 404 and missing.get_json()["code"] == "decision_not_found"
    responses = demo.get(f"/api/v1/decisions/{answer['decision_id']}", headers=auth("analyst")).get_json()["responses"]
    assert sorted(r["response"] for r in responses) == ["accepted", "clicked"]
    stats = {
        s["offer_id"]: s for s in demo.get("/api/v1/decisions/offers/statistics", headers=auth("analyst")).get_json()["items"]
    }
    assert (
        stats[first_offer]["accepted"] == 1
        and stats[first_offer]["actions"] == 1
        and stats[first_offer]["acceptance_rate"] == 1.0
    )


def test_acceptances_move_the_adaptive_propensity(demo, auth, app, database, rules_dir):
    # No exploration, so the propensity is the posterior mean and comparable between decisions.
    path = rules_dir / "learning.yaml"
    path.write_text(
        path.read_text().replace("default: {exploration: 1, prior_strength: 20}", "default: {exploration: 0, prior_strength: 5}")
    )
    cases = rules_dir / "learning.cases.yaml"
    cases.write_text(
        cases.read_text().replace("expect: {exploration: 1, prior_strength: 20}", "expect: {exploration: 0, prior_strength: 5}")
    )
    app.extensions["rulebook"].sync()
    assert app.extensions["rulebook"].status()["folder"]["refused"] is None
    before = decide(demo, auth, channel="call_centre")["actions"][0]
    learned = before["factors"]["learning"]
    assert learned["exploration"] == 0.2  # the agents' rule still applies on the phone
    for _ in range(6):
        answer = decide(demo, auth, channel="app")
        if answer["actions"]:
            offer_id, key = answer["actions"][0]["offer"]["id"], answer["actions"][0]["factors"]["learning"]["key"]
            assert (
                demo.post(
                    f"/api/v1/decisions/{answer['decision_id']}/responses", json={"response": "accepted"}, headers=auth("channel")
                ).status_code
                == 201
            )
    with database.connection() as conn:
        accepted = conn.execute(
            sa.select(sa.func.sum(OfferLearningRecord.accepted)).where(OfferLearningRecord.offer_id == offer_id)
        ).scalar()
        shown = conn.execute(
            sa.select(sa.func.count()).select_from(DecisionActionRecord).where(DecisionActionRecord.offer_id == offer_id)
        ).scalar()
    counts = app.extensions["decider"].learning.counts(offer_id, key)
    app.extensions["decider"].learning.sync()
    assert app.extensions["decider"].learning.counts(offer_id, key) == counts  # the database agrees with memory
    assert counts[0].accepted == accepted >= 1 and counts[0].shown == shown
    value, learned = app.extensions["decider"].learning.propensity(offer_id, key, 0.04, exploration=0, prior_strength=5)
    assert learned["multiplier"] > 1 and learned["exposure"] == pytest.approx(0.2)
    assert value == pytest.approx(0.2 * learned["multiplier"], rel=1e-3)
    # Offers nobody accepted stay at the prior: the model's exposure, unchanged.
    assert app.extensions["decider"].learning.propensity(999, key, 0.04, exploration=0, prior_strength=5)[0] == pytest.approx(0.2)


def test_learning_off_ranks_by_the_model(app, demo, auth):
    app.extensions["decider"].learning.enabled = False
    action = decide(demo, auth)["actions"][0]
    assert action["factors"]["propensity"] == action["factors"]["model_propensity"] and action["factors"]["learning"] == {
        "adaptive": False
    }


@pytest.mark.parametrize(
    "body,field",
    [
        ({"customer_id": "GROW", "channel": "fax"}, "channel"),
        ({"customer_id": "GROW", "channel": "app", "actions": 0}, "actions"),
        ({"customer_id": "GROW", "channel": "app", "actions": 11}, "actions"),
        ({"channel": "app"}, "customer_id"),
        ({"customer_id": "bad id!", "channel": "app"}, "customer_id"),
        ({"customer_id": "GROW", "channel": "app", "colour": "red"}, "colour"),
        ({"customer_id": "GROW", "channel": "app", "context": {"mood": "happy"}}, "context.mood"),
        ({"customer_id": "GROW", "channel": "app", "context": {"attributes": {"nested": {"a": 1}}}}, "context.attributes"),
    ],
)
def test_bad_requests_name_the_field(demo, auth, body, field):
    response = demo.post("/api/v1/decisions", json=body, headers=auth("channel"))
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["errors"], response.get_json()


def test_a_retired_offer_leaves_the_next_decision(demo, auth):
    top = decide(demo, auth, channel="call_centre")["actions"][0]["offer"]["id"]
    assert demo.patch(f"/api/v1/offers/{top}", json={"status": "retired"}, headers=auth("editor")).status_code == 200
    answer = decide(demo, auth, channel="call_centre")
    assert top not in [c["offer_id"] for c in answer["explanation"]]
    deleting = demo.delete(f"/api/v1/offers/{top}", headers=auth("editor"))
    assert deleting.status_code == 409 and deleting.get_json()["code"] == "offer_in_use"


def test_the_log_is_queryable_by_customer_and_time(demo, auth):
    ids = [decide(demo, auth, customer_id=c, channel="call_centre")["decision_id"] for c in ("GROW", "NEW", "GROW", "ZERO")]
    mine = demo.get("/api/v1/decisions?customer_id=GROW", headers=auth("analyst")).get_json()["items"]
    assert [d["decision_id"] for d in mine] == [ids[2], ids[0]]
    first = demo.get("/api/v1/decisions?limit=3", headers=auth("analyst")).get_json()
    rest = demo.get(f"/api/v1/decisions?limit=3&cursor={first['next_cursor']}", headers=auth("analyst")).get_json()
    assert [d["decision_id"] for d in first["items"] + rest["items"]] == ids[::-1] and rest["next_cursor"] is None
    future = (NOW + dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert demo.get(f"/api/v1/decisions?since={future}", headers=auth("analyst")).get_json()["items"] == []
    assert demo.get("/api/v1/decisions?cursor=nonsense", headers=auth("analyst")).status_code == 422


def test_a_decision_that_cannot_be_logged_fails_loudly(demo, auth, database):
    with database.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE decisions RENAME TO decisions_away")
    try:
        response = demo.post("/api/v1/decisions", json={"customer_id": "GROW", "channel": "app"}, headers=auth("channel"))
        assert response.status_code == 503 and response.get_json()["code"] == "decision_log_unavailable"
    finally:
        with database.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE decisions_away RENAME TO decisions")
    with database.connection() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(DecisionRecord)).scalar() == 0  # nothing half-written


def test_value_based_offers_and_the_360_view_show_decisions(demo, auth):
    segments = {
        s["segment"]: [o["code"] for o in s["offers"]]
        for s in demo.get("/api/v1/value/offers", headers=auth("analyst")).get_json()["segments"]
    }
    assert segments == {"high": ["VIP_EARLY_ACCESS"], "medium": [], "low": []}
    one = demo.get("/api/v1/value/offers?segment=high", headers=auth("channel")).get_json()["segments"]
    assert [s["segment"] for s in one] == ["high"]
    answer = decide(demo, auth, channel="app")
    profile = demo.get("/api/v1/customers/GROW/profile", headers=auth("analyst")).get_json()
    assert [d["decision_id"] for d in profile["recent_decisions"]] == [answer["decision_id"]]
    assert profile["recent_decisions"][0]["actions"][0]["offer_id"] == answer["actions"][0]["offer"]["id"]
    assert profile["value"]["segment"] in segments
    assert [o["code"] for o in profile["value_offers"]] == segments[profile["value"]["segment"]]


def test_concurrent_decisions_are_all_logged(demo, auth, app, database):
    from concurrent.futures import ThreadPoolExecutor

    from decision_server.decisions.service import DecisionRequest

    decider = app.extensions["decider"]
    requests = [
        DecisionRequest(c, ch, {"intent": "browse"}, 2)
        for c in ("GROW", "NEW", "ZERO", "NOBODY")
        for ch in ("app", "call_centre", "sms")
    ] * 10
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(decider.decide, requests))
    assert len({a["decision_id"] for a in answers}) == len(requests)
    with database.connection() as conn:
        logged = conn.execute(sa.select(sa.func.count()).select_from(DecisionRecord)).scalar()
        actions = conn.execute(sa.select(sa.func.count()).select_from(DecisionActionRecord)).scalar()
        shown = conn.execute(sa.select(sa.func.sum(OfferLearningRecord.shown))).scalar()
    assert logged == len(requests)
    assert actions == sum(len(a["actions"]) for a in answers) == shown


def test_a_customer_the_model_scores_zero_is_learnt_apart():
    from decision_server.decisions.learning import (
        UNSCORED_EXPOSURE,
        exposure,
        learning_key,
    )

    assert learning_key("low", 0.0) == "low:unscored" and learning_key("low", 0.2) == "low"
    assert exposure(0.0) == UNSCORED_EXPOSURE and exposure(0.25) == pytest.approx(0.5)


def test_free_context_attributes_reach_the_rules(demo, auth, app, rules_dir):
    path = rules_dir / "arbitration.yaml"
    text = path.read_text().replace(
        "  offer.category: {type: string, values: [welcome, onboarding, upsell, cross_sell, loyalty, vip, win_back, retention]}\noutputs:",
        "  offer.category: {type: string, values: [welcome, onboarding, upsell, cross_sell, loyalty, vip, win_back, retention]}\n"
        '  context.campaign: {type: string, description: "The campaign the channel says the customer came from"}\noutputs:',
    )
    text += (
        "  - id: black_friday_upsell\n    description: Customers who came from the Black Friday mail see upgrades first.\n"
        '    when: context.campaign == "black_friday" and offer.category == "upsell"\n    then: {factor: lever, weight: 4}\n'
    )
    path.write_text(text)
    app.extensions["rulebook"].sync()
    assert app.extensions["rulebook"].status()["folder"]["refused"] is None, app.extensions["rulebook"].status()
    plain = by_code(decide(demo, auth, channel="call_centre"))["UPSELL_UNLIMITED"]["factors"]
    pushed = by_code(decide(demo, auth, channel="call_centre", context={"attributes": {"campaign": "black_friday"}}))
    # Other levers may fire on the day the suite runs (december_upsell_push is valid in December 2026).
    assert pushed["UPSELL_UNLIMITED"]["factors"]["levers"] == pytest.approx(plain["levers"] * 4)
    assert "black_friday_upsell" in [w["rule"] for w in pushed["UPSELL_UNLIMITED"]["factors"]["weights"]]
