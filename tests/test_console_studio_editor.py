"""The rule editor over HTTP: the page on my draft, saving and discarding, validation while typing, the vocabulary; roles and CSRF."""

from __future__ import annotations

import html as html_lib
import re

import pytest

from decision_server.studio import drafts
from tests.test_console import csrf_of, sign_in

# The studio's screens call the studio services, which tests/test_studio_*.py run on SQLite and
# PostgreSQL; the pages themselves are the same on both, so they are tested on SQLite only.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

TYPO = ("when: value_score >= 70", "when: valu_score >= 70")
ORIGIN = {"Origin": "http://localhost"}


def _serving(app, file: str = "value.yaml") -> str:
    return app.extensions["rulebook"].current.files[file]


def _space(app, owner: str):
    rulebook = app.extensions["rulebook"]
    with rulebook.database.session() as session:
        return drafts.workspace(session, rulebook.current, owner)


def _textarea(page: str, id_: str = "rule-content") -> str:
    found = re.search(rf'<textarea[^>]*id="{id_}"[^>]*>(.*?)</textarea>', page, re.S)
    return html_lib.unescape(found.group(1))


def _save(client, file: str, content: str):
    token = csrf_of(client, f"/console/rules/{file}")
    return client.post(f"/console/rules/{file}", data={"csrf_token": token, "content": content}, headers=ORIGIN)


def _validate(client, file: str, body, token: str | None = None):
    token = token or csrf_of(client, f"/console/rules/{file}")
    headers = {"X-CSRF-Token": token, **ORIGIN}
    if isinstance(body, (dict, list)):
        return client.post(f"/console/rules/{file}/validate", json=body, headers=headers)
    return client.post(f"/console/rules/{file}/validate", data=body, headers={**headers, "Content-Type": "application/json"})


@pytest.fixture
def analyst(client, keys):
    sign_in(client, keys["analyst"])
    return client


def test_the_editor_opens_what_serves_when_i_have_no_draft(analyst, app):
    page = analyst.get("/console/rules/value.yaml")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert _textarea(html) == _serving(app) and _textarea(html, "rule-base") == _serving(app)
    assert "data-rule-editor" in html and 'data-validate-url="/console/rules/value.yaml/validate"' in html
    assert 'data-vocabulary-url="/console/rules/value.yaml/vocabulary"' in html and "editor.js" in html
    assert "No draft" in html and app.extensions["rulebook"].current.id[:12] in html
    assert "Value segment from the value score" in html
    assert re.search(r'id="editor-status"[^>]*>No problems · 6 cases pass<', html)
    assert 'href="/console/rules/value.yaml/cases"' in html and 'href="/console/rules/value.yaml/form"' in html
    assert 'id="link-publish"' not in html  # an analyst prepares drafts; an editor publishes them
    assert 'id="discard-form"' not in html  # nothing to discard


def test_an_editor_sees_the_publish_link(client, keys):
    sign_in(client, keys["editor"])
    html = client.get("/console/rules/value.yaml").get_data(as_text=True)
    assert re.search(r'<a [^>]*href="/console/rules/publish" id="link-publish"', html)


@pytest.mark.parametrize("file", ["nothing.yaml", "nothing.cases.yaml", "not-a-rule-file", "..%2Fsecret.yaml"])
def test_an_unknown_file_is_the_404_page(analyst, file):
    page = analyst.get(f"/console/rules/{file}")
    assert page.status_code == 404 and "Not found" in page.get_data(as_text=True)
    assert analyst.get(f"/console/rules/{file}/vocabulary").status_code == 404


@pytest.mark.parametrize("role", ["channel", "ingest"])
def test_keys_that_are_not_for_rules_are_refused_everything(client, keys, role):
    sign_in(client, keys[role])
    token = csrf_of(client, "/console/rules/value.yaml")  # the 403 page carries the session's token too
    assert client.get("/console/rules/value.yaml").status_code == 403
    assert client.get("/console/rules/value.yaml/vocabulary").status_code == 403
    posted = {"csrf_token": token, "content": "x"}
    assert client.post("/console/rules/value.yaml", data=posted, headers=ORIGIN).status_code == 403
    assert client.post("/console/rules/value.yaml/discard", data={"csrf_token": token}, headers=ORIGIN).status_code == 403
    answer = client.post("/console/rules/value.yaml/validate", json={"content": "x"}, headers={"X-CSRF-Token": token, **ORIGIN})
    assert answer.status_code == 403


def test_every_post_needs_the_csrf_token(analyst, app):
    changed = _serving(app).replace("Our most valuable customers.", "The best.")
    assert analyst.post("/console/rules/value.yaml", data={"content": changed}).status_code == 403
    assert analyst.post("/console/rules/value.yaml", data={"content": changed, "csrf_token": "stale"}).status_code == 403
    assert analyst.post("/console/rules/value.yaml/discard", data={}).status_code == 403
    assert analyst.post("/console/rules/value.yaml/validate", json={"content": changed}).status_code == 403
    assert _space(app, "key:test-analyst").changes == {}


def test_an_analyst_saves_a_draft_that_is_theirs_alone(analyst, app, client, keys):
    changed = _serving(app).replace("Our most valuable customers.", "The very best customers.")
    answer = _save(analyst, "value.yaml", changed)
    assert answer.status_code == 302 and answer.headers["Location"] == "/console/rules/value.yaml?notice=saved"
    html = analyst.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Draft saved" in html and _textarea(html) == changed and _textarea(html, "rule-base") == _serving(app)
    assert "based on revision" in html and "changed just now" in html and 'id="discard-form"' in html
    assert _space(app, "key:test-analyst").changes == {"value.yaml": changed}
    assert _serving(app) != changed  # a draft serves nobody
    sign_in(client, keys["editor"])  # another user sees what serves
    assert _textarea(client.get("/console/rules/value.yaml").get_data(as_text=True)) == _serving(app)


def test_a_draft_with_problems_saves_and_lists_them_without_javascript(analyst, app):
    broken = _serving(app).replace(*TYPO)
    assert _save(analyst, "value.yaml", broken).status_code == 302
    html = analyst.get("/console/rules/value.yaml").get_data(as_text=True)
    problems = re.search(r'<ol class="problem-list" id="rule-problems"[^>]*>(.*?)</ol>', html, re.S).group(1)
    assert "Line 17, column 11" in problems and "did you mean &#39;value_score&#39;?" in problems
    assert re.search(r'id="editor-status"[^>]*data-tone="bad">1 problem<', html)
    # Other files' editors list the problem with a link to its file.
    other = analyst.get("/console/rules/tiers.yaml").get_data(as_text=True)
    assert 'href="/console/rules/value.yaml">value.yaml:17:11</a>' in other


def test_saving_the_base_text_again_leaves_no_draft_and_discard_drops_one_file(analyst, app):
    value = _serving(app).replace("Our most valuable customers.", "Top.")
    tiers = _serving(app, "tiers.yaml") + "\n# a note\n"
    _save(analyst, "value.yaml", value)
    _save(analyst, "tiers.yaml", tiers)
    back = _save(analyst, "tiers.yaml", _serving(app, "tiers.yaml"))
    assert back.headers["Location"].endswith("notice=unchanged")
    assert set(_space(app, "key:test-analyst").changes) == {"value.yaml"}
    page = analyst.get("/console/rules/tiers.yaml").get_data(as_text=True)
    assert "does not change this file yet" in page and 'href="/console/rules/value.yaml">value.yaml</a>' in page
    token = csrf_of(analyst, "/console/rules/value.yaml")
    gone = analyst.post("/console/rules/value.yaml/discard", data={"csrf_token": token}, headers=ORIGIN)
    assert gone.status_code == 302 and gone.headers["Location"].endswith("notice=discarded")
    assert _space(app, "key:test-analyst").changes == {}
    assert _textarea(analyst.get("/console/rules/value.yaml").get_data(as_text=True)) == _serving(app)


def test_a_stale_draft_warns_and_links_to_the_rebase(analyst, app):
    _save(analyst, "value.yaml", _serving(app).replace("Our most valuable customers.", "Top."))
    rulebook = app.extensions["rulebook"]
    files = {**rulebook.current.files, "tiers.yaml": rulebook.current.files["tiers.yaml"] + "\n# published meanwhile\n"}
    rulebook.publish(files, author="key:someone", message="a note on tiers", source="api")
    html = analyst.get("/console/rules/value.yaml").get_data(as_text=True)
    warning = re.search(r'<div class="alert" id="stale-warning".*?</div>', html, re.S).group(0)
    assert "Someone published since" in warning and "tiers.yaml" in warning and 'href="/console/rules/rebase"' in warning


def test_validate_finds_the_typo_at_its_line_and_saves_nothing(analyst, app):
    answer = _validate(analyst, "value.yaml", {"content": _serving(app).replace(*TYPO)})
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["valid"] is False and isinstance(body["elapsed_ms"], float)
    assert body["problems"] == [
        {
            "file": "value.yaml",
            "line": 17,
            "column": 11,
            "message": "unknown name 'valu_score'; did you mean 'value_score'?",
            "severity": "error",
        }
    ]
    assert _space(app, "key:test-analyst").changes == {}
    fine = _validate(analyst, "value.yaml", {"content": _serving(app)}).get_json()
    assert fine["valid"] is True and fine["problems"] == [] and fine["cases"] == {"passed": 6, "failed": 0}
    assert fine["draft_cases"]["passed"] > 6 and fine["draft_cases"]["failed"] == 0


def test_validate_checks_the_whole_draft_with_the_file_replaced(analyst, app):
    _save(analyst, "tiers.yaml", _serving(app, "tiers.yaml").replace("ruleset: tiers", "ruleset: tier"))
    body = _validate(analyst, "value.yaml", {"content": _serving(app)}).get_json()
    assert body["valid"] is False and [p["file"] for p in body["problems"]] == ["tiers.yaml"]
    gap = _serving(app).replace("value_score >= 70", "value_score >= 75")
    body = _validate(analyst, "value.yaml", {"content": gap}).get_json()
    assert "a value_score in [70, 75) falls in no rule (the range is [0, 100])" in [p["message"] for p in body["problems"]]


def test_validate_runs_the_cases_of_a_cases_file_on_every_backend(analyst, app):
    wrong = _serving(app, "value.cases.yaml").replace("expect: {value_segment: high}", "expect: {value_segment: low}", 1)
    body = _validate(analyst, "value.cases.yaml", {"content": wrong}).get_json()
    assert body["valid"] is False and body["cases"] == {"passed": 5, "failed": 1}
    [problem] = body["problems"]
    backends = "durable, python, vector" if app.extensions["rulebook"].backend == "durable" else "python, vector"
    assert problem["file"] == "value.cases.yaml" and problem["line"] == 5
    assert problem["message"].startswith(f"case 'a clearly high score' ({backends}): expected outcome")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("{not json", "body"),
        ("[1, 2]", "body"),
        ({}, "content"),
        ({"content": 7}, "content"),
        ({"content": "x" * (1024 * 1024 + 1)}, "content"),
    ],
)
def test_validate_refuses_a_bad_body_with_a_json_422(analyst, body, field):
    answer = _validate(analyst, "value.yaml", body)
    assert answer.status_code == 422 and answer.is_json
    error = answer.get_json()
    assert set(error) >= {"code", "message", "errors"} and field in error["errors"]


def test_validate_of_an_unknown_file_is_a_json_404(analyst):
    answer = _validate(analyst, "nothing.yaml", {"content": "x"}, token=csrf_of(analyst, "/console/rules/value.yaml"))
    assert answer.status_code == 404 and answer.get_json()["code"] == "rule_file_not_found"


def test_the_vocabulary_of_a_rule_file(analyst):
    vocabulary = analyst.get("/console/rules/arbitration.yaml/vocabulary").get_json()
    inputs = {i["name"]: i for i in vocabulary["inputs"]}
    assert inputs["channel"] == {
        "name": "channel",
        "type": "string",
        "values": ["app", "call_centre", "sms"],
        "description": "Where the offer would be made",
    }
    functions = {f["name"]: f for f in vocabulary["functions"]}
    assert functions["days_since"]["signature"] == "days_since(timestamp) → number" and "date" in functions
    assert vocabulary["keys"][:4] == ["id", "description", "when", "then"] and "enabled" in vocabulary["keys"]
    assert "rules" in vocabulary["top_keys"] and {"and", "or", "not", "in", "is", "missing"} <= set(vocabulary["keywords"])
    value = analyst.get("/console/rules/value.yaml/vocabulary").get_json()
    assert value["outputs"] == [
        {"name": "value_segment", "type": "string", "values": ["high", "medium", "low"], "description": ""}
    ]


def test_the_vocabulary_of_a_cases_file_and_of_a_draft(analyst, app):
    cases = analyst.get("/console/rules/value.cases.yaml/vocabulary").get_json()
    assert [i["name"] for i in cases["inputs"]] == ["value_score"] and cases["ruleset"] == "value"
    assert cases["keys"] == ["name", "given", "now", "expect", "fired"] and cases["top_keys"] == ["ruleset", "now", "cases"]
    added = _serving(app).replace(
        "  value_score: {type: number", "  channel: {type: string, values: [app, sms]}\n  value_score: {type: number"
    )
    _save(analyst, "value.yaml", added)  # an input just declared in my draft completes at once
    names = [i["name"] for i in analyst.get("/console/rules/value.yaml/vocabulary").get_json()["inputs"]]
    assert names == ["channel", "value_score"]
