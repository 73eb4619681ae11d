"""The rule form screen over HTTP: roles, CSRF, saving into the user's draft, field errors, and the validation shown."""

from __future__ import annotations

import html
import re

import pytest
from werkzeug.datastructures import MultiDict

from decision_server.studio import drafts
from decision_server.studio.form import apply, describe
from tests.test_console import csrf_of, sign_in

# The studio's screens call the studio services, which tests/test_studio_*.py run on SQLite and
# PostgreSQL; the pages themselves are the same on both, so they are tested on SQLite only.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

FORM = "/console/rules/value.yaml/form"
BOUNDARY = "boundary:medium_value:high_value"


def _draft(app, role: str) -> dict[str, str]:
    """The changes of a role's draft (the test keys are named test-<role>)."""
    rulebook = app.extensions["rulebook"]
    with app.extensions["database"].session() as session:
        return dict(drafts.workspace(session, rulebook.current, f"key:test-{role}").changes)


def _posted(page_html: str) -> MultiDict:
    """The values the page's form would send as it stands, as a browser sends them (checked boxes only)."""
    form = page_html.split('id="rule-form"', 1)[1].split("</form>", 1)[0]
    data = MultiDict()
    for tag in re.findall(r"<input[^>]*>", form):
        attrs = dict(re.findall(r'([a-z-]+)="([^"]*)"', tag))
        if "name" not in attrs or (attrs.get("type") == "checkbox" and " checked" not in tag):
            continue
        data.add(html.unescape(attrs["name"]), html.unescape(attrs.get("value", "")))
    return data


@pytest.mark.parametrize("role", ["channel", "ingest"])
def test_channel_and_ingest_keys_see_nothing_of_the_form(client, keys, role):
    sign_in(client, keys[role])
    assert client.get(FORM).status_code == 403
    token = csrf_of(client, FORM)  # the refusal page carries the session's token: the role, not CSRF, refuses
    refused = client.post(FORM, data={"csrf_token": token, BOUNDARY: "75"})
    assert refused.status_code == 403 and "may not open this page" in refused.get_data(as_text=True)


def test_the_form_shows_each_rule_with_its_fields(client, keys):
    sign_in(client, keys["analyst"])
    response = client.get(FORM)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Value segment from the value score (0–100)." in page  # the rule set's description
    for title in ("Our most valuable customers.", "Solid customers with room to grow.", "Low value so far."):
        assert title in page
    assert re.search(r'<label for="boundary-medium_value-high_value">high from</label>\s*<input[^>]*value="70"', page)
    assert 'name="partition:high"' in page and 'value="100"' in page
    assert 'name="high_value:enabled"' in page and 'type="date"' in page
    assert '<code class="condition">40 &lt;= value_score &lt; 70</code>' in page
    assert 'href="/console/rules/value.yaml"' in page  # open in the editor
    assert 'href="/console/rules/publish"' not in page  # analysts do not publish
    assert "<script>" not in page and "style=" not in page  # the CSP allows neither


def test_editors_get_the_publish_link(client, keys):
    sign_in(client, keys["editor"])
    assert 'href="/console/rules/publish"' in client.get(FORM).get_data(as_text=True)


def test_an_analyst_saves_a_draft_that_is_the_text_apply_makes(client, keys, app):
    sign_in(client, keys["analyst"])
    page = client.get(FORM).get_data(as_text=True)
    data = _posted(page)
    assert data.get("digest") and data.get("csrf_token")
    data[BOUNDARY] = "75"
    data.setlist("low_value:enabled", [""])  # switched off too (leaves a gap the validation reports)
    response = client.post(FORM, data=data)
    assert response.status_code == 303 and response.headers["Location"].endswith("/form?saved=1")
    text = app.extensions["rulebook"].current.files["value.yaml"]
    expected = apply(text, describe("value.yaml", text).edits(data))
    assert _draft(app, "analyst") == {"value.yaml": expected}
    assert "value_score >= 75" in expected and "enabled: false" in expected
    assert _draft(app, "editor") == {}  # one draft per user
    shown = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Saved to your draft." in shown and "Not valid yet" in shown and "falls in no rule" in shown
    assert re.search(r'<input[^>]*name="boundary:medium_value:high_value" value="75"', shown)  # the draft is what shows


def test_a_valid_change_shows_its_cases_passing(client, keys, app):
    sign_in(client, keys["analyst"])
    data = _posted(client.get(FORM).get_data(as_text=True))
    data[BOUNDARY] = "75"
    shown = client.get(client.post(FORM, data=data).headers["Location"]).get_data(as_text=True)
    assert re.search(r'id="form-result-line">Valid,\s*6 cases pass\.', shown)
    # Sending the same values again changes nothing and says so.
    again = _posted(shown)
    response = client.post(FORM, data=again)
    assert response.headers["Location"].endswith("saved=none")
    assert "Nothing changed" in client.get(response.headers["Location"]).get_data(as_text=True)


def test_a_post_without_the_csrf_token_is_refused(client, keys, app):
    sign_in(client, keys["analyst"])
    data = _posted(client.get(FORM).get_data(as_text=True))
    data.pop("csrf_token")
    data[BOUNDARY] = "75"
    assert client.post(FORM, data=data).status_code == 403
    assert _draft(app, "analyst") == {}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (BOUNDARY, "seventy", "must be a number like 70 or 0.65"),
        ("partition:low", "", "must be a number"),
        ("high_value:valid_from", "2026-02-30", "must be a date like 2026-12-01"),
        ("high_value:valid_to", "soon", "must be a date"),
    ],
)
def test_bad_numbers_and_dates_show_the_form_again_with_the_fields_error(client, keys, app, field, value, message):
    sign_in(client, keys["analyst"])
    data = _posted(client.get(FORM).get_data(as_text=True))
    data[field] = value
    response = client.post(FORM, data=data)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    field_id = field.replace(":", "-")
    assert re.search(rf'<span class="field-error" id="err-{field_id}">{message}', page)
    assert f'aria-describedby="err-{field_id}"' in page
    assert f'value="{value}"' in page  # what was typed stays, to be corrected
    assert "nothing was saved" in page and _draft(app, "analyst") == {}


def test_a_window_that_ends_before_it_starts_is_refused(client, keys, app):
    sign_in(client, keys["analyst"])
    data = _posted(client.get(FORM).get_data(as_text=True))
    data["high_value:valid_from"], data["high_value:valid_to"] = "2026-12-01", "2026-11-01"
    response = client.post(FORM, data=data)
    assert response.status_code == 422 and "must be after the date it applies from" in response.get_data(as_text=True)


def test_a_form_opened_on_an_older_text_is_shown_again(client, keys, app):
    sign_in(client, keys["analyst"])
    data = _posted(client.get(FORM).get_data(as_text=True))
    rulebook = app.extensions["rulebook"]
    changed = rulebook.current.files["value.yaml"].replace("Low value so far.", "Low value, so far.")
    with app.extensions["database"].session(write=True) as session:  # as the editor in another tab would
        drafts.save_file(session, rulebook.current, "key:test-analyst", "value.yaml", changed)
    data[BOUNDARY] = "75"
    response = client.post(FORM, data=data)
    assert response.status_code == 409 and "The file changed since you opened the form" in response.get_data(as_text=True)
    assert _draft(app, "analyst") == {"value.yaml": changed}


def test_a_draft_that_does_not_load_sends_the_user_to_the_editor(client, keys, app):
    sign_in(client, keys["analyst"])
    rulebook = app.extensions["rulebook"]
    broken = rulebook.current.files["value.yaml"].replace("value_score >= 70", "value_scor >= 70")
    with app.extensions["database"].session(write=True) as session:
        drafts.save_file(session, rulebook.current, "key:test-analyst", "value.yaml", broken)
    page = client.get(FORM).get_data(as_text=True)
    assert "needs fixing in the editor first" in page and "did you mean &#39;value_score&#39;" in page
    assert 'id="rule-form"' not in page


def test_other_files_cases_files_and_unknown_names(client, keys):
    sign_in(client, keys["analyst"])
    offers = client.get("/console/rules/offers.yaml/form").get_data(as_text=True)
    assert 'name="vip_needs_status:c0"' in offers and 'value="gold"' in offers
    assert "<code>tier</code> is one of" in offers
    assert "Cases have no form" in client.get("/console/rules/value.cases.yaml/form").get_data(as_text=True)
    assert client.get("/console/rules/nothing.yaml/form").status_code == 404
    assert client.get("/console/rules/Value.YAML/form").status_code == 422


def test_a_list_change_is_saved_as_the_list_an_editor_would_type(client, keys, app):
    sign_in(client, keys["analyst"])
    data = _posted(client.get("/console/rules/offers.yaml/form").get_data(as_text=True))
    data.setlist("vip_needs_status:c0", ["", "bronze", "silver", "gold"])
    assert client.post("/console/rules/offers.yaml/form", data=data).status_code == 303
    text = app.extensions["rulebook"].current.files["offers.yaml"]
    assert _draft(app, "analyst") == {"offers.yaml": text.replace('["bronze", "silver"]', '["bronze", "silver", "gold"]')}
    data.setlist("vip_needs_status:c0", ["", "gld"])
    refused = client.post("/console/rules/offers.yaml/form", data=data)
    assert refused.status_code == 409  # the form was made for the text before the save: shown again, not applied


def test_a_threshold_a_case_pins_shows_the_failing_case(client, keys, app):
    sign_in(client, keys["analyst"])
    data = _posted(client.get("/console/rules/lifecycle.yaml/form").get_data(as_text=True))
    assert data["silent:n0"] == "60"
    data["silent:n0"] = "90"
    saved = client.post("/console/rules/lifecycle.yaml/form", data=data)
    page = client.get(saved.headers["Location"]).get_data(as_text=True)
    assert "Not valid yet" in page
    assert "lifecycle.cases.yaml line 20: case &#39;silent for exactly 60 days moves to win-back&#39;" in page
    assert "    when: days_since(last_purchase_at) &gt;= 90" not in page  # the text stays YAML's business
    assert "days_since(last_purchase_at) >= 90\n" in _draft(app, "analyst")["lifecycle.yaml"]
