"""The rule form in Chromium: a marketing manager moves the high-value threshold without seeing YAML."""

from __future__ import annotations

from decision_server.studio import drafts

OWNER = "key:browser-analyst"  # the live server's analyst key is named browser-analyst


def _sign_in(page, live_server, key: str = "analyst") -> None:
    page.goto(live_server.url("/console/sign-in"))
    page.fill("input[name=api_key]", live_server.keys[key])
    with page.expect_navigation():
        page.click("button[type=submit]")


def _draft(live_server) -> dict[str, str]:
    app = live_server.app
    with app.extensions["database"].session() as session:
        return dict(drafts.workspace(session, app.extensions["rulebook"].current, OWNER).changes)


def test_moving_the_high_value_boundary_in_the_form_saves_a_valid_draft(page, live_server, screenshot):
    _sign_in(page, live_server)
    served = live_server.app.extensions["rulebook"].current.files["value.yaml"]
    try:
        page.goto(live_server.url("/console/rules/value.yaml/form"))
        boundary = page.locator("input[name='boundary:medium_value:high_value']")
        assert boundary.input_value() == "70"
        assert page.inner_text("#rule-high_value h3") == "Our most valuable customers."
        screenshot(page, "studio-form")
        boundary.fill("75")
        with page.expect_navigation():
            page.click("#save-form")
        assert page.url.endswith("/console/rules/value.yaml/form?saved=1")
        assert page.inner_text("#form-result-line").lower() == "valid, 6 cases pass."
        assert page.locator("input[name='boundary:medium_value:high_value']").input_value() == "75"
        draft = _draft(live_server)["value.yaml"]
        assert "    when: value_score >= 75\n" in draft and "    when: 40 <= value_score < 75\n" in draft
        assert draft == served.replace("value_score >= 70", "value_score >= 75").replace("value_score < 70", "value_score < 75")
        screenshot(page, "studio-form-saved")

        # A typo stays in the form with its message; nothing else of the draft changes.
        page.evaluate("() => document.querySelector(\"input[name='high_value:valid_to']\").type = 'text'")
        page.locator("input[name='high_value:valid_to']").fill("someday")
        with page.expect_navigation():
            page.click("#save-form")
        assert "must be a date" in page.inner_text("#err-high_value-valid_to")
        assert _draft(live_server)["value.yaml"] == draft
        screenshot(page, "studio-form-error")
    finally:
        with live_server.app.extensions["database"].session(write=True) as session:
            drafts.discard(session, OWNER)


def test_an_offer_rule_shows_its_tiers_as_checkboxes(page, live_server, screenshot):
    _sign_in(page, live_server)
    page.goto(live_server.url("/console/rules/offers.yaml/form"))
    group = page.locator("#vip_needs_status-c0")
    assert group.locator("legend").inner_text().startswith("tier is one of")
    checked = group.locator("input[type=checkbox]:checked")
    assert [checked.nth(i).get_attribute("value") for i in range(checked.count())] == ["bronze", "silver"]
    screenshot(page, "studio-form-offers")
