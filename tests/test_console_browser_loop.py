"""The rule studio's whole loop in Chromium, as a marketing manager does it on value.yaml.

Type a typo → a marker at its line with the message → fix it → high value from 70 to 75 → run
the cases → trace a customer whose segment changes → a what-if whose high → medium count is a
direct count over the base → publish → the next decision over the API carries the new revision →
roll back → the old revision serves again.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from decision_server.jobs import reevaluation
from decision_server.studio import drafts

OWNER = "key:browser-editor"
VIEW = "[...window.ruleEditors.values()][0].view"


def _api(live_server, path: str, *, key: str = "analyst", body: dict | None = None) -> dict:
    request = urllib.request.Request(
        live_server.url(path),
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {live_server.keys[key]}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _count(live_server, sql: str, **params) -> int:
    with live_server.app.extensions["database"].connection() as conn:
        return conn.exec_driver_sql(sql, params).scalar()


@pytest.fixture
def base(live_server):
    """The live base right after a full pass (stored value scores are the pass's); the rules and my draft put back after."""
    app = live_server.app
    rulebook = app.extensions["rulebook"]
    files = dict(rulebook.current.files)
    done = reevaluation.run(
        app.extensions["database"], rulebook.current, app.extensions["models"].current, steps=["rfm", "stages"]
    )
    assert done["status"] == "succeeded"
    yield live_server
    with app.extensions["database"].session(write=True) as session:
        drafts.discard(session, OWNER)
    if rulebook.current.files != files:
        rulebook.publish(files, author="key:test", message="restore after the loop test", source="api")


def _select(page, line_text: str, word: str) -> None:
    """Select `word` in the editor line that shows `line_text`."""
    line = page.locator(".cm-line", has_text=line_text)
    line.click()
    page.keyboard.press("Home")
    page.keyboard.press("Home")
    column = line.inner_text().index(line_text) + line_text.index(word)
    for _ in range(column):
        page.keyboard.press("ArrowRight")
    for _ in word:
        page.keyboard.press("Shift+ArrowRight")


def test_a_manager_changes_the_high_value_threshold_sees_the_effect_publishes_and_undoes_it(page, base, screenshot):
    live_server = base
    serving = _api(live_server, "/api/v1/rules")["revision"]
    page.goto(live_server.url("/console/sign-in"))
    page.fill("input[name=api_key]", live_server.keys["editor"])
    with page.expect_navigation():
        page.click("button[type=submit]")

    # 1. The rule set browser → the editor of value.yaml.
    page.goto(live_server.url("/console/rules"))
    with page.expect_navigation():
        page.click('tr[data-file="value.yaml"] a:has-text("Edit")')
    page.wait_for_selector("[data-rule-editor].is-mounted[data-checked='1']", state="attached")

    # 2. A typo: a marker on its line with the message; fixing it clears it.
    _select(page, "when: value_score >= 70", "value_score")
    page.keyboard.type("valu_score", delay=20)
    page.keyboard.press("Escape")
    page.wait_for_selector(".cm-lintRange-error")
    line = page.evaluate(
        f"() => {{ const v = {VIEW}; return v.state.doc.lineAt(v.posAtDOM(v.contentDOM.querySelector('.cm-lintRange-error'))).number; }}"
    )
    assert line == 17
    assert page.inner_text("#rule-problems .problem-message") == "unknown name 'valu_score'; did you mean 'value_score'?"
    _select(page, "when: valu_score >= 70", "valu_score")
    page.keyboard.type("value_score", delay=20)
    page.keyboard.press("Escape")
    page.wait_for_selector(".cm-lintRange-error", state="detached")

    # 3. High value from 75: both edges of the boundary move, the partition stays whole.
    for line_text in ("when: value_score >= 70", "when: 40 <= value_score < 70"):
        _select(page, line_text, "70")
        page.keyboard.type("75")
    page.keyboard.press("Escape")
    page.wait_for_selector("#editor-status[data-tone=good]")
    assert page.inner_text("#editor-status") == "No problems · 6 cases pass"
    with page.expect_navigation():
        page.click("#save-draft")

    # 4. Run the cases: six, each passing on every backend.
    page.goto(live_server.url("/console/rules/value.yaml/cases"))
    assert page.locator("#case-grid tbody tr").count() == 6 and page.locator("#case-grid td.fail").count() == 0

    # 5. Trace a customer with a score in [70, 75): high serving, medium under my draft.
    with live_server.app.extensions["database"].connection() as conn:
        customer = conn.exec_driver_sql(
            "SELECT c.external_id FROM customers c JOIN customer_state s ON s.customer_id = c.id "
            "WHERE s.value_segment = 'high' AND s.value_score >= 70 AND s.value_score < 75 ORDER BY c.id LIMIT 1"
        ).scalar()
    assert customer is not None
    page.goto(live_server.url(f"/console/rules/trace?customer={customer}&channel=app"))
    row = page.locator('#trace-profile tr[data-field="value_segment"]')
    assert row.locator('td[data-side="serving"] .value').inner_text() == "High"
    assert row.locator('td[data-side="draft"] .value').inner_text() == "Medium"
    assert "row-changed" in row.get_attribute("class")
    screenshot(page, "studio-loop-trace")

    # 6. What-if on the whole base: the high → medium count is what a direct count says.
    page.goto(live_server.url("/console/rules/what-if"))
    with page.expect_navigation():
        page.click("#whatif-form button[type=submit]")
    page.wait_for_selector("#whatif-live[data-status=succeeded]", timeout=180_000)
    direct = _count(
        live_server,
        "SELECT count(*) FROM customer_state WHERE value_segment = 'high' AND value_score >= 70 AND value_score < 75",
    )
    assert direct > 0
    assert page.inner_text("#value-moves-high-medium td.num") == f"{direct:,}"

    # 7. Publish: the diff, the cases and the what-if on the page; then the API's next decision carries it.
    page.goto(live_server.url("/console/rules/publish"))
    assert f"{direct:,}" in page.inner_text("#check-what-if")
    assert "0</strong> fail" in page.inner_html("#case-counts")
    page.fill("#message", "High value from a score of 75")
    with page.expect_navigation():
        page.click("#publish-button")
    assert "Published" in page.inner_text("#notice")
    published = _api(live_server, "/api/v1/rules")["revision"]
    assert published != serving
    decision = _api(live_server, "/api/v1/decisions", key="channel", body={"customer_id": customer, "channel": "app"})
    assert decision["revision"] == published
    screenshot(page, "studio-loop-history")

    # 8. Roll back in one click: the old revision serves again, and decisions say so.
    page.on("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        page.locator(f'#history tr[data-revision="{serving}"] button.rollback').first.click()
    assert "Rolled back" in page.inner_text("#notice")
    assert _api(live_server, "/api/v1/rules")["revision"] == serving
    decision = _api(live_server, "/api/v1/decisions", key="channel", body={"customer_id": customer, "channel": "app"})
    assert decision["revision"] == serving
