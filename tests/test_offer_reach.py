"""A what-if's offer reach: which offers a draft rule change makes eligible or ineligible, for how
many customers, and who is left with none. Checked against the decisions themselves: what the
what-if counts for every customer and channel is what POST /decisions says, customer by customer."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter

import pytest
import sqlalchemy as sa

from decision_server.config import DEFAULT_CHANNELS
from decision_server.customers.records import CustomerRecord
from decision_server.demo import generator
from decision_server.loyalty.demo import start_program
from decision_server.offers import service as offers

CHECKED = ("catalog", "offers")  # the contact policy is the moment's, not the what-if's


@pytest.fixture
def base(app, client, auth, database, run_ended):
    """120 demo customers, the demo catalog, the recent buyers enrolled, and state brought up to date."""
    generator.load(database, generator.DemoSpec(customers=120, seed=11))
    with database.session(write=True) as session:
        offers.load_demo_catalog(session, channels=DEFAULT_CHANNELS, words=offers.vocabulary(None))
    app.extensions["catalog"].sync()
    start_program(database, app.extensions["rulebook"].current, days=60)
    run = client.post("/api/v1/jobs/reevaluate", json={"steps": ["rfm", "stages", "segments", "tiers"]}, headers=auth("admin"))
    assert run_ended(run.get_json()["id"])["status"] == "succeeded"
    return client


@pytest.fixture
def what_if(base, auth, run_ended):
    """Return a function that asks a what-if (POST /jobs/what-if) and returns its offer reach by channel."""

    def ask(**body) -> dict:
        asked = base.post("/api/v1/jobs/what-if", json=body, headers=auth("editor"))
        assert asked.status_code == 202, asked.get_json()
        run = run_ended(asked.get_json()["id"])
        assert run["status"] == "succeeded", run["error"]
        return {c["channel"]: c for c in run["result"]["pass"]["offers"]["channels"]}

    return ask


def _decisions(client, auth, database, channel: str, intent: str | None) -> dict:
    """Ask a decision for every customer: who may have which offer (catalog and offers rules), and why not."""
    with database.connection() as conn:
        people = conn.execute(sa.select(CustomerRecord.external_id)).scalars().all()
    eligible, removed, none = Counter(), Counter(), 0
    only_by = Counter()  # (offer code, rule): customers a single rule kept the offer from
    for person in people:
        answer = client.post(
            "/api/v1/decisions",
            json={"customer_id": person, "channel": channel, **({"context": {"intent": intent}} if intent else {})},
            headers=auth("channel"),
        )
        assert answer.status_code == 201, answer.get_json()
        mine = 0
        for candidate in answer.get_json()["explanation"]:
            reasons = [r["rule"] for r in candidate["removed_by"] if r["ruleset"] in CHECKED]
            removed.update((candidate["code"], rule) for rule in reasons)
            if not reasons:
                eligible[candidate["code"]] += 1
                mine += 1
            elif len(reasons) == 1:
                only_by[(candidate["code"], reasons[0])] += 1
        none += mine == 0
    return {"customers": len(people), "eligible": eligible, "removed": removed, "none": none, "only_by": only_by}


@pytest.mark.parametrize("channel,intent", [("app", None), ("call_centre", "complaint"), ("sms", "browse")])
def test_offer_reach_counts_what_decisions_decide(base, auth, database, what_if, channel, intent):
    truth = _decisions(base, auth, database, channel, intent)
    reach = what_if(steps=["stages", "offers"], channels=[channel], intent=intent)[channel]
    assert reach["customers"] == truth["customers"] == 120
    assert reach["no_eligible_offer"] == {"before": truth["none"], "after": truth["none"]}
    assert {o["code"]: o["eligible_before"] for o in reach["offers"]} == {
        o["code"]: truth["eligible"][o["code"]] for o in reach["offers"]
    }
    assert sum(truth["eligible"].values()) > 0 and len(reach["offers"]) == 8
    for offer in reach["offers"]:  # no change drafted, state current: nothing moves
        assert offer["eligible_after"] == offer["eligible_before"] and offer["became_eligible"] == offer["became_ineligible"] == 0
        assert offer["removed_by_after"] == {rule: n for (code, rule), n in truth["removed"].items() if code == offer["code"]}


def test_a_draft_that_widens_an_offer_reports_who_gains_it(base, auth, database, rules_dir, what_if):
    truth = _decisions(base, auth, database, "app", None)
    text = (rules_dir / "offers.yaml").read_text()
    # DOUBLE_POINTS for every lifecycle stage: the stage rule no longer holds it back
    draft = text.replace(
        "when: stage not in offer.target_stages\n", 'when: stage not in offer.target_stages and offer.code != "DOUBLE_POINTS"\n'
    )
    assert draft != text
    gained = truth["only_by"][("DOUBLE_POINTS", "wrong_stage")]
    assert gained > 0  # the demo base has customers only their stage keeps from it

    reach = what_if(files={"offers.yaml": draft}, steps=["offers"], channels=["app"])["app"]
    for offer in reach["offers"]:
        assert offer["became_eligible"] == (gained if offer["code"] == "DOUBLE_POINTS" else 0), offer
        assert offer["became_ineligible"] == 0
        assert offer["eligible_after"] == offer["eligible_before"] + offer["became_eligible"]
    assert reach["offers"][0]["code"] == "DOUBLE_POINTS"  # the offers that change come first
    assert "wrong_stage" not in reach["offers"][0]["removed_by_after"]
    assert reach["no_eligible_offer"]["before"] == truth["none"] >= reach["no_eligible_offer"]["after"]

    tighter = text.replace("churn_risk >= 0.6", "churn_risk >= 0.0")  # no selling to anyone with a score
    both = what_if(files={"offers.yaml": tighter}, steps=["offers"], channels=["app", "sms"])
    for channel in ("app", "sms"):
        sellers = [o for o in both[channel]["offers"] if o["category"] in ("upsell", "cross_sell")]
        assert sellers and all(o["eligible_after"] == 0 and o["became_ineligible"] == o["eligible_before"] for o in sellers)
        assert sum(o["eligible_before"] for o in sellers) > 0
        assert all(o["became_eligible"] == 0 for o in both[channel]["offers"])


def test_offer_reach_refuses_what_it_cannot_try(base, auth):
    unknown = base.post("/api/v1/jobs/what-if", json={"steps": ["offers"], "channels": ["fax"]}, headers=auth("editor"))
    assert unknown.status_code == 422 and "channels" in unknown.get_json()["errors"], unknown.get_json()
    assert "app" in unknown.get_json()["message"]
    real = base.post("/api/v1/jobs/reevaluate", json={"steps": ["offers"]}, headers=auth("admin"))
    assert real.status_code == 422 and "dry-run step" in real.get_json()["errors"]["steps.0"][0], real.get_json()


def test_the_cli_dry_run_tries_offers_and_shows_the_run(base, app, auth, database_url, rules_dir, what_if):
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "RULES_DIR": str(rules_dir),
        "MODELS_DIR": str(app.extensions["config"].models_dir),
    }
    cli = os.path.join(os.path.dirname(sys.executable), "decision-server")
    dry = subprocess.run(
        [cli, "reevaluate", "--dry-run", "--only", "offers", "--channel", "sms", "--intent", "browse"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert dry.returncode == 0, dry.stderr
    run_id = int(re.search(r"^run (\d+) succeeded", dry.stdout, re.MULTILINE).group(1))
    shown = subprocess.run([cli, "jobs", "show", str(run_id), "--json"], env=env, capture_output=True, text=True, check=False)
    assert shown.returncode == 0, shown.stderr
    recorded = json.loads(shown.stdout)
    assert recorded["job"] == "what-if" and recorded["steps"] == ["offers"] and recorded["dry_run"]
    by_cli = {o["code"]: o["eligible_before"] for o in recorded["result"]["pass"]["offers"]["channels"][0]["offers"]}
    by_api = {
        o["code"]: o["eligible_before"] for o in what_if(steps=["offers"], channels=["sms"], intent="browse")["sms"]["offers"]
    }
    assert by_cli == by_api and sum(by_cli.values()) > 0
    for code, count in by_cli.items():  # the summary names every offer with its reach
        assert re.search(rf"^\s+{code}\s+eligible for\s+{count:,} -> {count:,}", dry.stdout, re.MULTILINE), (code, dry.stdout)
    refused = subprocess.run([cli, "reevaluate", "--only", "offers"], env=env, capture_output=True, text=True, check=False)
    assert refused.returncode == 2 and "dry-run step" in refused.stderr
    missing = subprocess.run([cli, "jobs", "show", "9999"], env=env, capture_output=True, text=True, check=False)
    assert missing.returncode == 1 and "no run 9999" in missing.stderr
