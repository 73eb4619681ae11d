"""The rule studio's hub over HTTP: rule sets, cases, publish, history and rollback, revisions, rebase; roles and CSRF."""

from __future__ import annotations

import re

import pytest

from decision_server.studio import drafts
from tests.test_console import csrf_of, sign_in

# The studio's screens call the studio services, which tests/test_studio_*.py run on SQLite and
# PostgreSQL; the pages themselves are the same on both, so they are tested on SQLite only.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

HIGH_75 = (("value_score >= 70", "value_score >= 75"), ("40 <= value_score < 70", "40 <= value_score < 75"))


def _value_75(text: str) -> str:
    for old, new in HIGH_75:
        text = text.replace(old, new)
    return text


def _save(app, owner: str, file: str, content: str):
    rulebook = app.extensions["rulebook"]
    with rulebook.database.session(write=True) as session:
        return drafts.save_file(session, rulebook.current, owner, file, content)


@pytest.fixture
def editor(client, keys):
    sign_in(client, keys["editor"])
    return client


def _post(client, path, data, page="/console/rules"):
    return client.post(path, data={"csrf_token": csrf_of(client, page), **data}, headers={"Origin": "http://localhost"})


@pytest.mark.parametrize("role", ["channel", "ingest"])
def test_keys_that_are_not_for_rules_see_none_of_the_studio(client, keys, role):
    sign_in(client, keys[role])
    for path in ("/console/rules", "/console/rules/publish", "/console/rules/history", "/console/rules/value.yaml/cases"):
        assert client.get(path).status_code == 403, path
    assert "Rule sets" not in client.get("/console/").get_data(as_text=True)


def test_the_rule_sets_page_lists_every_rule_file_with_its_cases_and_last_change(editor, app):
    html = editor.get("/console/rules").get_data(as_text=True)
    rules = app.extensions["rulebook"].current
    for name in rules.files:
        if not name.endswith(".cases.yaml"):
            assert f'data-file="{name}"' in html
    row = re.search(r'<tr data-file="value.yaml">(.*?)</tr>', html, re.S).group(1)
    assert "6 cases, all pass" in row and "value segment" in row
    assert rules.id[:12] in html


def test_an_analyst_prepares_a_draft_but_only_an_editor_publishes_it(client, keys, app):
    sign_in(client, keys["analyst"])
    original = app.extensions["rulebook"].current.files["value.yaml"]
    _save(app, "key:test-analyst", "value.yaml", _value_75(original))
    page = client.get("/console/rules/publish").get_data(as_text=True)
    assert "publish-not-allowed" in page and 'id="publish-button"' not in page
    assert "+    when: value_score &gt;= 75" in page
    refused = _post(client, "/console/rules/publish", {"message": "high from 75"})
    assert refused.status_code == 403
    assert "value_score >= 70" in app.extensions["rulebook"].current.files["value.yaml"]


def test_an_editor_publishes_then_rolls_back_and_the_api_follows(editor, app, client, auth):
    rulebook = app.extensions["rulebook"]
    before = rulebook.current.id
    _save(app, "key:test-editor", "value.yaml", _value_75(rulebook.current.files["value.yaml"]))
    page = editor.get("/console/rules/publish").get_data(as_text=True)
    assert re.search(r"<strong>\d+</strong> cases pass, <strong>0</strong> fail", page)
    assert 'id="publish-blocked"' not in page
    missing = _post(editor, "/console/rules/publish", {"message": " "}, page="/console/rules/publish")
    assert missing.status_code == 422
    done = _post(editor, "/console/rules/publish", {"message": "high from 75"}, page="/console/rules/publish")
    assert done.status_code == 302 and "notice=published" in done.headers["Location"]
    after = client.get("/api/v1/rules", headers=auth("analyst")).get_json()
    assert after["revision"] != before and after["published"]["source"] == "console"
    assert after["published"]["author"] == "key:test-editor" and after["published"]["message"] == "high from 75"
    assert "value_score >= 75" in rulebook.rules_dir.joinpath("value.yaml").read_text()  # the folder, as the API writes it
    history = editor.get("/console/rules/history?notice=published").get_data(as_text=True)
    assert "high from 75" in history and "Published: the new revision serves now" in history
    back = _post(editor, "/console/rules/rollback", {"revision": before, "message": "undo"}, page="/console/rules/history")
    assert back.status_code == 302
    assert client.get("/api/v1/rules", headers=auth("analyst")).get_json()["revision"] == before
    assert "value_score >= 70" in rulebook.rules_dir.joinpath("value.yaml").read_text()


def test_publishing_is_refused_while_a_case_fails(editor, app):
    rulebook = app.extensions["rulebook"]
    broken = (
        rulebook.current.files["value.yaml"]
        .replace("value_score >= 70", "value_score >= 95")
        .replace("40 <= value_score < 70", "40 <= value_score < 95")
    )
    _save(app, "key:test-editor", "value.yaml", broken)
    page = editor.get("/console/rules/publish").get_data(as_text=True)
    assert 'id="publish-blocked"' in page and "fail" in page
    assert re.search(r'id="publish-button"\s+disabled', page)
    refused = _post(editor, "/console/rules/publish", {"message": "try"}, page="/console/rules/publish")
    assert refused.status_code == 422
    text = refused.get_data(as_text=True)
    assert "value.cases.yaml" in text and "a clearly high score" in text
    assert "value_score >= 70" in rulebook.current.files["value.yaml"]


def test_a_stale_draft_goes_to_the_rebase_page_which_shows_three_ways(editor, app):
    rulebook = app.extensions["rulebook"]
    original = rulebook.current.files["value.yaml"]
    _save(app, "key:test-editor", "value.yaml", _value_75(original))
    rulebook.publish(
        {**rulebook.current.files, "value.yaml": original.replace("Value segment from", "The value segment from")},
        author="key:someone",
        message="wording",
        source="api",
    )
    publish = _post(editor, "/console/rules/publish", {"message": "high from 75"}, page="/console/rules/publish")
    assert publish.status_code == 302 and publish.headers["Location"].endswith("/console/rules/rebase")
    page = editor.get("/console/rules/rebase").get_data(as_text=True)
    assert "Published since you started" in page and "Your changes" in page and "After rebasing" in page
    assert "merges cleanly" in page
    done = _post(editor, "/console/rules/rebase", {}, page="/console/rules/rebase")
    assert done.status_code == 302 and "notice=rebased" in done.headers["Location"]
    published = _post(editor, "/console/rules/publish", {"message": "high from 75"}, page="/console/rules/publish")
    assert published.status_code == 302
    served = rulebook.current.files["value.yaml"]
    assert "The value segment from" in served and "value_score >= 75" in served


def test_the_cases_page_runs_every_case_on_every_backend_and_adds_one_to_the_draft(editor, app):
    page = editor.get("/console/rules/value.yaml/cases").get_data(as_text=True)
    assert page.count('data-case="') == 6 and 'class="fail"' not in page
    assert "6</strong> of 6 cases pass" in page
    added = _post(
        editor,
        "/console/rules/value.yaml/cases",
        {"name": "72 is high", "given": "{value_score: 72}", "expect": "{value_segment: high}", "fired": "[high_value]"},
        page="/console/rules/value.yaml/cases",
    )
    assert added.status_code == 302
    page = editor.get("/console/rules/value.yaml/cases").get_data(as_text=True)
    assert page.count('data-case="') == 7 and "7</strong> of 7 cases pass" in page
    with app.extensions["database"].session() as session:
        space = drafts.workspace(session, app.extensions["rulebook"].current, "key:test-editor")
    assert space.changes["value.cases.yaml"].endswith(
        "  - name: 72 is high\n    given: {value_score: 72}\n    expect: {value_segment: high}\n    fired: [high_value]\n"
    )
    # The threshold moves to 75: the new case fails, on every backend, and publishing is refused.
    _save(app, "key:test-editor", "value.yaml", _value_75(app.extensions["rulebook"].current.files["value.yaml"]))
    page = editor.get("/console/rules/value.yaml/cases").get_data(as_text=True)
    assert "6</strong> of 7 cases pass" in page
    row = re.search(r'<tr class="failed" data-case="72 is high">(.*?)</tr>', page, re.S).group(1)
    assert row.count('class="fail"') == 3 and "expected outcome" in row


def test_a_bad_case_is_refused_with_its_field_and_nothing_is_saved(editor, app):
    bad = _post(
        editor,
        "/console/rules/value.yaml/cases",
        {"name": "bad", "given": "{value_score: [", "expect": "{value_segment: high}"},
        page="/console/rules/value.yaml/cases",
    )
    assert bad.status_code == 422 and "given is not valid YAML" in bad.get_data(as_text=True)
    assert 'value="bad"' in bad.get_data(as_text=True)  # the form keeps what was typed
    with app.extensions["database"].session() as session:
        assert drafts.workspace(session, app.extensions["rulebook"].current, "key:test-editor").changes == {}


def test_writes_need_the_csrf_token(editor):
    for path in ("/console/rules/publish", "/console/rules/rollback", "/console/rules/rebase", "/console/rules/value.yaml/cases"):
        assert editor.post(path, data={"message": "x"}).status_code == 403, path


def test_a_revision_page_shows_its_diff_against_what_serves(editor, app):
    rulebook = app.extensions["rulebook"]
    first = rulebook.current.id
    rulebook.publish(
        {**rulebook.current.files, "value.yaml": _value_75(rulebook.current.files["value.yaml"])},
        author="key:x",
        message="m",
        source="api",
    )
    page = editor.get(f"/console/rules/revisions/{first[:12]}").get_data(as_text=True)
    assert "-    when: value_score &gt;= 75" in page and "+    when: value_score &gt;= 70" in page
    assert editor.get("/console/rules/revisions/zz").status_code == 422
    assert editor.get("/console/rules/revisions/abcdef123456").status_code == 404


def test_each_decision_in_the_360_links_to_the_revision_that_made_it(client, auth, keys):
    assert client.post("/api/v1/customers", json={"external_id": "R1"}, headers=auth("admin")).status_code == 201
    decided = client.post("/api/v1/decisions", json={"customer_id": "R1", "channel": "sms"}, headers=auth("channel")).get_json()
    sign_in(client, keys["analyst"])
    page = client.get("/console/customers/R1?tab=timeline&kind=decision").get_data(as_text=True)
    link = f'href="/console/rules/revisions/{decided["revision"]}"'
    assert link in page
    assert client.get(f"/console/rules/revisions/{decided['revision']}").status_code == 200
    sign_in(client, keys["channel"])  # may read the customer, not the rules: the revision without a link
    page = client.get("/console/customers/R1?tab=timeline&kind=decision").get_data(as_text=True)
    assert link not in page and f"<code>{decided['revision'][:12]}</code>" in page


def test_edits_on_disk_show_up_in_the_studio_and_a_refused_one_with_its_problems(editor, app):
    rulebook = app.extensions["rulebook"]
    path = rulebook.rules_dir / "value.yaml"
    path.write_text(_value_75(path.read_text()))
    rulebook.sync()
    page = editor.get("/console/rules").get_data(as_text=True)
    assert rulebook.current.id[:12] in page and "value_score >= 75" in rulebook.current.files["value.yaml"]
    row = re.search(r'<tr data-file="value.yaml">(.*?)</tr>', page, re.S).group(1)
    assert "rules folder" in row or "file" in row
    path.write_text(path.read_text().replace("value_score >= 75", "valu_score >= 75"))
    rulebook.sync()
    page = editor.get("/console/rules").get_data(as_text=True)
    refused = re.search(r'<div class="alert" id="refused-edit">(.*?)</div>', page, re.S).group(1)
    assert "value.yaml:17:11" in refused and "did you mean &#39;value_score&#39;" in refused
    assert "value_score >= 75" in rulebook.current.files["value.yaml"]  # the last good revision keeps serving
