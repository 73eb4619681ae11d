"""The studio's trace of one customer under a draft next to the serving revision, "why not offer X?",
and a customer's inputs to a rule set as a case: on demo customers with trained models, the state
brought up to date by the re-evaluation job, and a draft that moves the high-value threshold 70 → 75."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
import yaml

from decision_server.config import DEFAULT_CHANNELS
from decision_server.customers.records import CustomerRecord, CustomerStateRecord
from decision_server.demo import generator
from decision_server.errors import NotFound, ValidationError
from decision_server.loyalty.demo import start_program
from decision_server.offers import service as offers
from decision_server.rules.engine import build_revision
from decision_server.studio import trace as studio

_c, _s = CustomerRecord.__table__, CustomerStateRecord.__table__


def threshold_75(files: dict[str, str]) -> dict[str, str]:
    """The rule files with the high-value threshold at 75 instead of 70."""
    text = (
        files["value.yaml"]
        .replace("value_score >= 70", "value_score >= 75")
        .replace("40 <= value_score < 70", "40 <= value_score < 75")
    )
    assert text != files["value.yaml"]
    return {**files, "value.yaml": text}


@pytest.fixture
def base(app, client, auth, database, models_dir, run_ended):
    """200 demo customers scored by trained models, the demo catalog, the recent buyers enrolled, state up to date."""
    app.extensions["models"].sync()
    generator.load(database, generator.DemoSpec(customers=200, seed=11))
    with database.session(write=True) as session:
        offers.load_demo_catalog(session, channels=DEFAULT_CHANNELS, words=offers.vocabulary(None))
    app.extensions["catalog"].sync()
    start_program(database, app.extensions["rulebook"].current, days=60)
    run = client.post("/api/v1/jobs/reevaluate", json={"steps": ["rfm", "stages", "segments", "tiers"]}, headers=auth("admin"))
    assert run_ended(run.get_json()["id"])["status"] == "succeeded"
    return app


@pytest.fixture
def draft(base):
    """The serving files with the threshold at 75, built as the trace builds a draft."""
    serving = base.extensions["rulebook"].current
    with studio.draft_revision(threshold_75(serving.files), serving=serving) as built:
        yield built


def _trace(app, customer_id, channel="app", draft=None, intent=None):
    ext = app.extensions
    return studio.trace(
        ext["database"],
        customer_id=customer_id,
        channel=channel,
        intent=intent,
        serving=ext["rulebook"].current,
        draft=draft,
        models=ext["models"].current,
        decider=ext["decider"],
        margin=ext["config"].default_margin,
    )


def _inputs(app, revision, ruleset, customer_id, **extra):
    ext = app.extensions
    return studio.customer_inputs(
        ext["database"],
        revision=revision,
        ruleset=ruleset,
        customer_id=customer_id,
        models=ext["models"].current,
        decider=ext["decider"],
        margin=ext["config"].default_margin,
        **extra,
    )


def _between_70_and_75(database) -> list[tuple[str, str]]:
    """Customers whose value score is in [70, 75), with their stage: high now, medium at 75."""
    with database.connection() as conn:
        rows = conn.execute(
            sa.select(_c.c.external_id, _s.c.stage)
            .join(_s, _s.c.customer_id == _c.c.id)
            .where(_s.c.value_score >= 70, _s.c.value_score < 75)
            .order_by(_c.c.id)
        ).all()
    assert rows, "the demo base has no customer with a value score in [70, 75)"
    return [tuple(r) for r in rows]


def _row(rows, field):
    return next(r for r in rows if r["field"] == field)


def test_a_customer_between_70_and_75_is_medium_under_the_draft_and_its_decision_follows(base, draft, database):
    people = _between_70_and_75(database)
    # VIP early access targets the high segment, for growth and retention: such a customer shows it best.
    customer = next((p for p, stage in people if stage in ("growth", "retention")), people[0][0])
    found = _trace(base, customer, draft=draft)
    rows = studio.profile_rows(found)
    value = _row(rows, "value_segment")
    assert (value["stored"], value["serving"], value["draft"]) == ("high", "high", "medium") and value["changed"]
    assert (value["serving_rule"], value["draft_rule"]) == ("high_value", "medium_value")
    assert _row(rows, "value_score")["serving"] == _row(rows, "value_score")["draft"] and not _row(rows, "value_score")["changed"]
    assert not any(r["drift"] for r in rows), "the trace disagrees with what the re-evaluation just wrote"
    # The draft's decision reads the draft's segment, for every offer and for learning.
    assert found.draft.decision["customer"]["value_segment"] == "medium"
    assert found.serving.decision["customer"]["value_segment"] == "high"
    assert {row["value_segment"] for row in found.draft.decision["rows"].values()} == {"medium"}
    for candidate in found.draft.candidates.values():
        if candidate["eligible"]:
            assert candidate["factors"]["learning"]["key"].startswith("medium")
            assert candidate["factors"]["learning"]["exploration"] == 0  # no Thompson draw in a trace
    vip_serving, vip_draft = found.serving.candidates["VIP_EARLY_ACCESS"], found.draft.candidates["VIP_EARLY_ACCESS"]
    assert "wrong_segment" not in [r["rule"] for r in vip_serving["removed_by"]]
    assert "wrong_segment" in [r["rule"] for r in vip_draft["removed_by"]] and not vip_draft["eligible"]
    # Deterministic: a second trace gives the same priorities and ranks.
    again = _trace(base, customer, draft=draft)
    assert {c: (v["priority"], v["rank"]) for c, v in again.draft.candidates.items()} == {
        c: (v["priority"], v["rank"]) for c, v in found.draft.candidates.items()
    }


def test_without_a_draft_there_is_one_side(base, database):
    serving = base.extensions["rulebook"].current
    with studio.draft_revision(serving.files, serving=serving) as same:
        assert same is None
    customer = _between_70_and_75(database)[0][0]
    found = _trace(base, customer)
    assert found.draft is None and found.shown is found.serving
    assert not any(r["changed"] for r in studio.profile_rows(found))
    assert studio.why_not(found, "NOPE").startswith("NOPE is not an active offer")


def test_why_not_names_the_rule_the_rank_or_the_catalog(base, draft, database):
    with database.connection() as conn:
        people = conn.execute(sa.select(_c.c.external_id).order_by(_c.c.id)).scalars().all()
    removed = outranked = None
    for person in people:  # on the phone most offers may be made: someone with more eligible offers than are shown
        found = _trace(base, person, channel="call_centre", draft=draft)
        if len(found.draft.decision["ranked"]) > studio.ACTIONS and outranked is None:
            outranked = found
        if any(c["removed_by"] and c["removed_by"][0]["ruleset"] == "offers" for c in found.draft.candidates.values()):
            removed = removed or found
        if removed and outranked:
            break
    assert removed and outranked

    code, candidate = next(
        (c, v) for c, v in removed.draft.candidates.items() if v["removed_by"] and v["removed_by"][0]["ruleset"] == "offers"
    )
    rule = candidate["removed_by"][0]
    line = studio.why_not(removed, code)
    assert line.startswith(f"Under your draft, {code} is removed by rule {rule['rule']} of offer eligibility: ")
    assert rule["reason"].rstrip(".") in line and "\n" not in line

    fourth = outranked.draft.decision["ranked"][studio.ACTIONS]
    third = outranked.draft.candidates[outranked.draft.decision["ranked"][studio.ACTIONS - 1]]
    line = studio.why_not(outranked, fourth)
    priority = outranked.draft.candidates[fourth]["priority"]
    assert line.startswith(
        f"Under your draft, {fourth} is eligible but ranks 4th (priority {priority:.4g}; the 3rd has {third['priority']:.4g})"
    )
    first = outranked.draft.decision["ranked"][0]
    assert studio.why_not(outranked, first).startswith(f"Under your draft, {first} is offered: it ranks 1st")

    on_sms = _trace(base, people[0], channel="sms", draft=draft)  # the retention save offer is made by an agent only
    assert studio.why_not(on_sms, "RETENTION_SAVE").startswith(
        "Under your draft, RETENTION_SAVE is not offered on sms (catalog: no treatment for the channel"
    )
    assert studio.why_not(on_sms, "LOUNGE_UPGRADE") == "LOUNGE_UPGRADE is not an active offer."


def test_an_unknown_customer_or_channel_is_refused(base):
    with pytest.raises(NotFound) as missing:
        _trace(base, "NOBODY")
    assert missing.value.code == "customer_not_found"
    with pytest.raises(ValidationError) as bad:
        _trace(base, "DEMO-000001", channel="fax")
    assert "channel" in bad.value.errors


def _with_case(revision, ruleset: str, made: dict) -> dict[str, str]:
    """The revision's files with `made` appended to the rule set's cases, as the cases page would write it."""
    name = f"{ruleset}.cases.yaml"
    data = yaml.safe_load(revision.files[name])
    case = {
        "name": "made from a customer",
        "given": made["given"],
        "now": made["now"],
        "expect": made["expect"],
        "fired": made["fired"],
    }
    data["cases"].append(case)
    return {**revision.files, name: yaml.safe_dump(data, sort_keys=False, allow_unicode=True)}


def test_a_customer_s_value_inputs_make_a_case_that_passes(base, draft, database):
    customer = _between_70_and_75(database)[0][0]
    serving = base.extensions["rulebook"].current
    under_draft = _inputs(base, draft, "value", customer)
    under_serving = _inputs(base, serving, "value", customer)
    assert set(under_draft["given"]) == {"value_score"} and 70 <= under_draft["given"]["value_score"] < 75
    assert under_draft["given"] == under_serving["given"] and under_draft["missing"] == []
    assert (under_draft["expect"], under_draft["fired"]) == ({"value_segment": "medium"}, ["medium_value"])
    assert (under_serving["expect"], under_serving["fired"]) == ({"value_segment": "high"}, ["high_value"])
    assert under_draft["revision"] == draft.id and under_draft["customer_id"] == customer and under_draft["offer"] is None
    build_revision(_with_case(draft, "value", under_draft), backend="python").close()  # the cases run: it passes


def test_a_customer_s_lifecycle_inputs_are_the_stage_before_and_iso_times(base, draft, database):
    customer = _between_70_and_75(database)[0][0]
    made = _inputs(base, draft, "lifecycle", customer)
    assert set(made["given"]) <= set(draft.rulesets["lifecycle"].inputs) and made["given"]["transaction_count"] >= 1
    assert made["given"]["last_purchase_at"].endswith("Z") and made["now"].endswith("Z")
    found = _trace(base, customer, draft=draft)
    assert made["expect"] == {"stage": found.draft.profile.values["stage"]}
    assert made["fired"] == [found.draft.profile.rules["stage"]]
    build_revision(_with_case(draft, "lifecycle", made), backend="python").close()


def test_a_customer_s_offer_inputs_are_the_decision_s_row_for_that_offer(base, draft, database):
    customer = _between_70_and_75(database)[0][0]
    with pytest.raises(ValidationError) as refused:
        _inputs(base, draft, "offers", customer)
    assert set(refused.value.errors) == {"channel", "offer"}
    made = _inputs(base, draft, "offers", customer, channel="app", offer_code="VIP_EARLY_ACCESS")
    given = made["given"]
    assert (given["channel"], given["offer.code"], given["offer.target_segments"]) == ("app", "VIP_EARLY_ACCESS", ["high"])
    assert given["value_segment"] == "medium" and "intent" in made["missing"]
    found = _trace(base, customer, draft=draft)
    removed = found.draft.candidates["VIP_EARLY_ACCESS"]["removed_by"]
    assert made["fired"] == [r["rule"] for r in removed if r["ruleset"] == "offers"]
    assert made["expect"] == [{"check": r["check"], "reason": r["reason"]} for r in removed if r["ruleset"] == "offers"]
    assert (made["channel"], made["offer"]) == ("app", "VIP_EARLY_ACCESS")
    build_revision(_with_case(draft, "offers", made), backend="python").close()
    with pytest.raises(NotFound):
        _inputs(base, draft, "no_such_rules", customer)


def test_the_cases_page_s_case_from_a_customer_runs_under_the_draft_files(base, database):
    customer = _between_70_and_75(database)[0][0]
    files = threshold_75(base.extensions["rulebook"].current.files)
    made = studio.case_from_customer(base, files, "value.yaml", customer)
    assert made["expect"] == {"value_segment": "medium"} and made["fired"] == ["medium_value"]
    assert made["name"].startswith(f"customer {customer} as of ") and made["ruleset"] == "value"
    policy = studio.case_from_customer(base, files, "contact_policy.yaml", customer, channel="sms", offer_code="WELCOME10")
    assert policy["given"]["channel"] == "sms" and "on sms, WELCOME10" in policy["name"]
    with pytest.raises(NotFound):
        studio.case_from_customer(base, files, "nothing.yaml", customer)
