"""The rule studio's hub in Chromium: two editors on one file, the rebase path, history and rollback."""

from __future__ import annotations

import pytest

from decision_server.auth import service as auth_service
from decision_server.studio import drafts

pytestmark = pytest.mark.usefixtures("live_server")


def _sign_in(page, live_server, key: str) -> None:
    page.goto(live_server.url("/console/sign-in"))
    page.fill("input[name=api_key]", key)
    with page.expect_navigation():
        page.click("button[type=submit]")


@pytest.fixture
def restore_rules(live_server):
    """Put the revision that served before the test back (the live server is shared by the run's browser tests)."""
    rulebook = live_server.app.extensions["rulebook"]
    files = dict(rulebook.current.files)
    yield rulebook
    with rulebook.database.session(write=True) as session:
        for owner in ("key:browser-editor", "key:browser-editor-2", "key:browser-analyst"):
            drafts.discard(session, owner)
    rulebook.publish(files, author="key:test", message="restore after a browser test", source="api")


@pytest.fixture
def second_editor(live_server) -> str:
    database = live_server.app.extensions["database"]
    with database.session(write=True) as session:
        known = {k.name for k in auth_service.list_keys(session, include_revoked=False)}
        if "browser-editor-2" in known:
            pytest.skip("the second editor's key exists already (its secret is gone)")
        return auth_service.create_key(session, name="browser-editor-2", role="editor").secret


def _save(rulebook, owner: str, file: str, content: str) -> None:
    with rulebook.database.session(write=True) as session:
        drafts.save_file(session, rulebook.current, owner, file, content)


def test_two_editors_on_one_file_rebase_instead_of_overwriting(browser, live_server, restore_rules, second_editor, screenshot):
    rulebook = restore_rules
    original = rulebook.current.files["value.yaml"]
    ann = browser.new_context(reduced_motion="reduce", locale="en-US")
    bob = browser.new_context(reduced_motion="reduce", locale="en-US")
    try:
        a, b = ann.new_page(), bob.new_page()
        _sign_in(a, live_server, live_server.keys["editor"])
        _sign_in(b, live_server, second_editor)
        # Both start from the same revision: Ann moves the high-value threshold, Bob rewords the rule set.
        _save(rulebook, "key:browser-editor", "value.yaml", original.replace(">= 70", ">= 75").replace("< 70", "< 75"))
        _save(rulebook, "key:browser-editor-2", "value.yaml", original.replace("Value segment from", "The value segment from"))
        a.goto(live_server.url("/console/rules"))
        assert a.locator('tr[data-file="value.yaml"] .chip.on').inner_text() == "in your draft"
        screenshot(a, "studio-rule-sets")

        b.goto(live_server.url("/console/rules/publish"))
        assert b.locator("#check-cases .good").count() == 1
        b.fill("#message", "clearer wording")
        with b.expect_navigation():
            b.click("#publish-button")
        assert "Published" in b.locator("#notice").inner_text()
        assert b.locator("#history tbody tr").first.locator("td").nth(1).inner_text().count("clearer wording") == 1
        screenshot(b, "studio-history")

        # Ann's draft is now based on an older revision: publishing it would undo Bob's change.
        a.goto(live_server.url("/console/rules/publish"))
        assert "Someone published since" in a.locator("#draft-state").inner_text()
        assert a.locator("#publish-button").is_disabled()
        screenshot(a, "studio-publish-stale")
        a.click("#draft-state a:has-text('rebase your draft')")
        a.wait_for_selector(".three-way")
        assert a.locator(".three-way h3").all_inner_texts() == ["Published since you started", "Your changes", "After rebasing"]
        assert "merges cleanly" in a.locator(".three-way h2").inner_text()
        assert "+description: The value segment from" in a.locator("#theirs-1").inner_text()
        assert "+    when: value_score >= 75" in a.locator("#mine-1").inner_text()
        merged = a.locator("#merged-1").inner_text()  # against what serves: only Ann's change is left
        assert "+    when: value_score >= 75" in merged and "+description" not in merged and "-description" not in merged
        screenshot(a, "studio-rebase")
        with a.expect_navigation():
            a.click("#rebase-button")
        assert "now based on the revision that serves" in a.locator("#notice").inner_text()
        assert not a.locator("#publish-button").is_disabled()
        a.fill("#message", "high value from 75")
        with a.expect_navigation():
            a.click("#publish-button")
        served = rulebook.current.files["value.yaml"]
        assert "The value segment from" in served and "value_score >= 75" in served
        rows = a.locator("#history tbody tr")
        assert "high value from 75" in rows.nth(0).inner_text() and "clearer wording" in rows.nth(1).inner_text()

        # Roll back to before Ann's publication: Bob's wording serves again, the threshold is 70.
        a.on("dialog", lambda dialog: dialog.accept())
        with a.expect_navigation():
            rows.nth(1).locator("button.rollback").click()
        assert "Rolled back" in a.locator("#notice").inner_text()
        served = rulebook.current.files["value.yaml"]
        assert "The value segment from" in served and "value_score >= 70" in served
    finally:
        ann.close()
        bob.close()


def test_the_cases_page_in_the_browser(page, live_server, restore_rules, screenshot):
    _sign_in(page, live_server, live_server.keys["analyst"])
    page.goto(live_server.url("/console/rules/value.yaml/cases"))
    assert page.locator("#case-grid tbody tr").count() == 6
    assert page.locator("#case-grid td.fail").count() == 0
    page.fill("#case-name", "72 is high")
    page.fill("#case-given", "{value_score: 72}")
    page.fill("#case-expect", "{value_segment: high}")
    with page.expect_navigation():
        page.click("#add-case-button")
    assert page.locator("#case-grid tbody tr").count() == 7
    assert "7 of 7 cases pass" in page.locator("#case-summary").inner_text()
    screenshot(page, "studio-cases")
