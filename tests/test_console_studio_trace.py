"""Trace a customer in the console over HTTP: roles, the empty state, finding the customer, bad input,
my draft next to the serving revision, why-not (partial and plain GET), and the link from the 360."""

from __future__ import annotations

import re

import pytest

from decision_server.studio import drafts
from tests.test_console import csrf_of, sign_in
from tests.test_studio_trace import _between_70_and_75, base, threshold_75  # noqa: F401  (base: the fixture)

# The studio's screens call the studio services, which tests/test_studio_*.py run on SQLite and
# PostgreSQL; the pages themselves are the same on both, so they are tested on SQLite only.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

PAGE = "/console/rules/trace"


def _save(app, owner: str, file: str, content: str) -> None:
    rulebook = app.extensions["rulebook"]
    with rulebook.database.session(write=True) as session:
        drafts.save_file(session, rulebook.current, owner, file, content)


def _row(html: str, attribute: str, value: str) -> str:
    found = re.search(rf'<tr {attribute}="{re.escape(value)}" class="([^"]*)">(.*?)</tr>', html, re.S)
    assert found, f"no row {attribute}={value}"
    return found.group(1) + "|" + found.group(2)


def _cell(row: str, side: str) -> str:
    return re.search(rf'<td data-side="{side}"[^>]*>(.*?)</td>', row, re.S).group(1)


@pytest.fixture
def analyst(client, keys):
    sign_in(client, keys["analyst"])
    return client


@pytest.mark.parametrize("role", ["channel", "ingest"])
def test_keys_that_are_not_for_rules_cannot_trace(client, keys, role):
    sign_in(client, keys[role])
    assert client.get(PAGE).status_code == 403
    assert client.get(PAGE + "/why-not?customer=X&offer=Y").status_code == 403
    assert "Trace a customer" not in client.get("/console/", follow_redirects=True).get_data(as_text=True)


def test_an_analyst_sees_the_page_in_the_menu_and_an_empty_state(analyst):
    response = analyst.get(PAGE)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and 'id="trace-empty"' in html and "Pick a customer to trace" in html
    assert f'href="{PAGE}"' in analyst.get("/console/", follow_redirects=True).get_data(as_text=True)


def test_an_unknown_customer_gets_a_message_and_bad_choices_the_form_error(analyst):
    response = analyst.get(PAGE + "?customer=NOBODY-AT-ALL")
    html = response.get_data(as_text=True)
    assert response.status_code == 404 and 'id="trace-unknown"' in html and "No customer matches “NOBODY-AT-ALL”" in html
    for query, field in (("channel=fax", "channel"), ("intent=shout", "intent")):
        bad = analyst.get(f"{PAGE}?customer=X&{query}")
        assert bad.status_code == 422 and "Check the form" in bad.get_data(as_text=True), query
        assert f"<code>{field}</code>" in bad.get_data(as_text=True)
    assert analyst.get(PAGE + "/why-not?customer=X").status_code == 422  # no offer named


def test_my_draft_is_traced_next_to_the_serving_revision(base, client, keys, database):  # noqa: F811
    sign_in(client, keys["analyst"])
    serving = base.extensions["rulebook"].current
    _save(base, "key:test-analyst", "value.yaml", threshold_75(serving.files)["value.yaml"])
    people = _between_70_and_75(database)
    customer = next((p for p, stage in people if stage in ("growth", "retention")), people[0][0])
    html = client.get(f"{PAGE}?customer={customer}&channel=app").get_data(as_text=True)
    assert "Your draft</th>" in html and 'id="no-draft"' not in html
    assert f'href="/console/rules/revisions/{serving.id}"' in html and serving.id[:12] in html
    value = _row(html, "data-field", "value_segment")
    assert value.startswith("row-changed|") and "High" in _cell(value, "serving") and "Medium" in _cell(value, "draft")
    assert "high_value" in _cell(value, "serving") and "medium_value" in _cell(value, "draft")
    assert not _row(html, "data-field", "value_score").startswith("row-changed")
    vip = _row(html, "data-offer", "VIP_EARLY_ACCESS")
    assert (
        vip.startswith("row-changed|") and "wrong_segment" in _cell(vip, "draft") and "wrong_segment" not in _cell(vip, "serving")
    )

    # Why not: the htmx partial, and the same answer in the page without JS.
    partial = client.get(f"{PAGE}/why-not?customer={customer}&channel=app&offer=VIP_EARLY_ACCESS", headers={"HX-Request": "true"})
    line = partial.get_data(as_text=True)
    assert partial.status_code == 200 and "<html" not in line and 'id="why-not-line"' in line
    assert "Under your draft, VIP_EARLY_ACCESS is removed by rule" in line
    page = client.get(f"{PAGE}?customer={customer}&channel=app&offer=VIP_EARLY_ACCESS").get_data(as_text=True)
    assert re.search(r'id="why-not-line"[^>]*>(.*?)</p>', page, re.S).group(1) == re.search(
        r'id="why-not-line"[^>]*>(.*?)</p>', line, re.S
    ).group(1)
    unknown = client.get(f"{PAGE}/why-not?customer={customer}&channel=app&offer=NOPE", headers={"HX-Request": "true"})
    assert "NOPE is not an active offer." in unknown.get_data(as_text=True)

    # Make a case from them: the trace links to the changed file's cases, whose form the customer fills.
    assert f'href="/console/rules/value.yaml/cases?customer={customer}#from-customer"' in html
    token = csrf_of(client, f"/console/rules/value.yaml/cases?customer={customer}")
    filled = client.post(
        "/console/rules/value.yaml/cases/from-customer",
        data={"csrf_token": token, "customer_id": customer},
        headers={"Origin": "http://localhost"},
    ).get_data(as_text=True)
    assert "value_segment: medium" in filled and "medium_value" in filled and "value_score: 7" in filled
    for file in ("contact_policy.yaml", "offers.yaml"):  # cases of per-offer rule sets ask for a channel and an offer
        assert 'name="offer"' in client.get(f"/console/rules/{file}/cases").get_data(as_text=True), file


def test_without_a_draft_or_with_a_broken_one_the_serving_rules_are_shown_alone(base, client, keys, database):  # noqa: F811
    sign_in(client, keys["analyst"])
    customer = _between_70_and_75(database)[0][0]
    html = client.get(f"{PAGE}?customer={customer}").get_data(as_text=True)
    assert 'id="no-draft"' in html and "Your draft</th>" not in html and 'data-side="draft"' not in html
    _save(base, "key:test-analyst", "value.yaml", "ruleset: value\nrules: [oops\n")
    broken = client.get(f"{PAGE}?customer={customer}")
    text = broken.get_data(as_text=True)
    assert broken.status_code == 200 and 'id="draft-refused"' in text and "value.yaml:" in text
    assert 'data-side="draft"' not in text and 'data-side="serving"' in text


def test_a_search_lists_customers_to_pick_one_match_is_traced_and_the_360_links_here(base, client, keys, database):  # noqa: F811
    sign_in(client, keys["analyst"])
    listed = client.get(f"{PAGE}?customer=DEMO-0000&channel=sms").get_data(as_text=True)
    assert 'id="trace-matches"' in listed and "The first 10 matches" in listed
    assert f'href="{PAGE}?customer=DEMO-000001&amp;channel=sms"' in listed
    one = client.get(f"{PAGE}?customer=demo-000001&channel=sms").get_data(as_text=True)  # a search: case does not matter
    assert 'id="trace-profile"' in one and "<strong>DEMO-000001</strong>" in one
    # The 360 links here for roles that may trace.
    html = client.get("/console/customers/DEMO-000001").get_data(as_text=True)
    assert f'href="{PAGE}?customer=DEMO-000001"' in html and "Trace under my draft" in html
    sign_in(client, keys["channel"])
    html = client.get("/console/customers/DEMO-000001").get_data(as_text=True)
    assert "Trace under my draft" not in html
