"""The rule editor in Chromium under the console's CSP: styled, problems at their line as one types, completions, changes, saving."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from decision_server.studio import drafts

OWNER = "key:browser-analyst"
EDITOR = "[data-rule-editor]"
# Runs inside the page: the editor's view (window.ruleEditors maps each editor's host element to it).
VIEW = "[...window.ruleEditors.values()][0].view"


def _sign_in(page, live_server, key: str = "analyst") -> None:
    page.goto(live_server.url("/console/sign-in"))
    page.fill("input[name=api_key]", live_server.keys[key])
    with page.expect_navigation():
        page.click("button[type=submit]")


def _discard(live_server) -> None:
    with live_server.app.extensions["database"].session(write=True) as session:
        drafts.discard(session, OWNER)


def _space(live_server):
    rulebook = live_server.app.extensions["rulebook"]
    with rulebook.database.session() as session:
        return drafts.workspace(session, rulebook.current, OWNER)


@pytest.fixture
def editor_page(page, live_server):
    """The editor on value.yaml (no draft yet), signed in as an analyst, its first check done; CSP reports collected."""
    _discard(live_server)
    refused = []
    page.on("console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None)
    page.on("pageerror", lambda error: refused.append(str(error)))
    _sign_in(page, live_server)
    checks = []
    page.on("request", lambda request: checks.append(request) if request.url.endswith("/validate") else None)
    page.goto(live_server.url("/console/rules/value.yaml"))
    page.wait_for_selector(f"{EDITOR}.is-mounted[data-checked='1']", state="attached")
    yield SimpleNamespace(page=page, refused=refused, checks=checks)
    _discard(live_server)


def _select_word(page, line_text: str, word: str) -> None:
    """Put the selection on `word` in the line that shows `line_text`."""
    line = page.locator(".cm-line", has_text=line_text)
    line.click()
    page.keyboard.press("Home")
    page.keyboard.press("Home")  # the first press may stop at the indentation
    full = line.inner_text()
    column = full.index(line_text) + line_text.index(word)
    for _ in range(column):
        page.keyboard.press("ArrowRight")
    for _ in word:
        page.keyboard.press("Shift+ArrowRight")


def test_a_typo_shows_at_its_line_until_fixed_with_a_completion(editor_page, live_server, screenshot):
    page, checks = editor_page.page, editor_page.checks
    styles = page.evaluate(
        """() => { const root = document.querySelector('[data-rule-editor]').shadowRoot;
        const css = (selector) => getComputedStyle(root.querySelector(selector));
        return [css('.cm-content').whiteSpace, css('.cm-gutters').backgroundColor, css('.cm-scroller').fontFamily]; }"""
    )
    assert styles[0] == "pre" and styles[1] == "rgb(247, 248, 250)" and styles[2].startswith("ui-monospace")
    assert page.is_hidden("#rule-content")  # the textarea is replaced, not shown beside it
    assert page.inner_text("#editor-status") == "No problems · 6 cases pass"
    first_checks = len(checks)

    _select_word(page, "when: value_score >= 70", "value_score")
    page.keyboard.type("valu_score", delay=30)
    page.wait_for_selector(".cm-tooltip-autocomplete")  # completion offers the declared input
    options = page.eval_on_selector_all(".cm-tooltip-autocomplete li .cm-completionLabel", "els => els.map(e => e.textContent)")
    assert options[0] == "value_score"
    page.keyboard.press("Escape")
    marker = page.wait_for_selector(".cm-lintRange-error")
    assert marker.inner_text() == "valu_score"
    line = page.evaluate(
        f"() => {{ const v = {VIEW}; return v.state.doc.lineAt(v.posAtDOM(v.contentDOM.querySelector('.cm-lintRange-error'))).number; }}"
    )
    assert line == 17
    page.wait_for_selector("#editor-status[data-tone=bad]")
    assert page.inner_text("#editor-status") == "1 problem"
    assert page.inner_text("#rule-problems .problem-place") == "Line 17, column 11"
    assert page.inner_text("#rule-problems .problem-message") == "unknown name 'valu_score'; did you mean 'value_score'?"
    assert len(checks) - first_checks < len("valu_score")  # checked after a pause, not at each keystroke
    assert "valu_score >= 70" in page.input_value("#rule-content")  # the form posts what the editor shows
    screenshot(page, "rule-editor-typo")

    page.click("#rule-problems button.problem-place")  # the cursor goes to the problem
    cursor = page.evaluate(
        f"() => {{ const v = {VIEW}; const s = v.state.selection.main; return [v.state.doc.lineAt(s.from).number, v.state.sliceDoc(s.from, s.to)]; }}"
    )
    assert cursor == [17, "valu_score"]
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Control+Space")
    page.wait_for_selector(".cm-tooltip-autocomplete li[aria-selected] >> text=value_score")
    page.wait_for_timeout(120)  # a list just opened ignores Enter for 75 ms (autocomplete's interactionDelay)
    page.keyboard.press("Enter")
    page.wait_for_selector(".cm-lintRange-error", state="detached")
    page.wait_for_selector("#editor-status[data-tone=good]")
    assert page.inner_text("#editor-status") == "No problems · 6 cases pass"
    assert page.is_hidden("#rule-problems")
    assert editor_page.refused == []
    assert _space(live_server).changes == {}  # checking saves nothing


def test_a_changed_threshold_shows_its_changes_and_saves_as_a_draft(editor_page, live_server, screenshot):
    page = editor_page.page
    for line_text in ("when: value_score >= 70", "when: 40 <= value_score < 70"):
        _select_word(page, line_text, "70")
        page.keyboard.type("75")
    page.keyboard.press("Escape")
    page.wait_for_selector("#editor-status[data-tone=good]")
    assert page.inner_text("#editor-status") == "No problems · 6 cases pass"

    page.click("[data-editor-changes]")
    assert page.inner_text("[data-editor-changes]") == "Hide changes"
    deleted = page.eval_on_selector_all(".cm-deletedChunk .cm-deletedLine", "els => els.map(e => e.textContent)")
    assert deleted == ["    when: value_score >= 70", "    when: 40 <= value_score < 70"]
    assert page.locator(".cm-changedLine").count() == 2
    screenshot(page, "rule-editor-changes")
    page.click("[data-editor-changes]")
    assert page.locator(".cm-deletedChunk").count() == 0

    with page.expect_navigation():
        page.click("#save-draft")
    assert page.inner_text("#notice").startswith("Draft saved")
    page.wait_for_selector(f"{EDITOR}.is-mounted", state="attached")
    assert "when: value_score >= 75" in page.evaluate(f"() => {VIEW}.state.doc.toString()")
    assert "Draft" in page.inner_text("#draft-state") and "changed just now" in page.inner_text("#draft-state")
    saved = _space(live_server).changes["value.yaml"]
    assert "when: value_score >= 75" in saved and "when: 40 <= value_score < 75" in saved
    assert "value_score >= 70" in live_server.app.extensions["rulebook"].current.files["value.yaml"]  # nothing published
    page.wait_for_selector(f"{EDITOR}[data-checked='1']", state="attached")
    screenshot(page, "rule-editor-saved")

    # The side-by-side diff widget, as the publish page shows the draft against what serves.
    page.goto(live_server.url("/console/rules/publish"))
    page.wait_for_selector("[data-merge-view].is-mounted .cm-mergeView")
    sides = page.locator("[data-merge-view] .cm-mergeView .cm-editor")
    assert sides.count() == 2
    changed = page.eval_on_selector_all("[data-merge-view] .cm-merge-b .cm-changedLine", "els => els.map(e => e.textContent)")
    assert "    when: value_score >= 75" in changed
    page.locator("[data-merge-view]").scroll_into_view_if_needed()  # CodeMirror measures its lines once they are in view
    page.evaluate("() => window.scrollTo(0, 0)")
    screenshot(page, "rule-editor-publish-diff")
    assert page.get_attribute("[data-merge-view]", "data-layout") == "side-by-side"  # 1440 px wide again
    page.set_viewport_size({"width": 420, "height": 900})
    page.wait_for_selector("[data-merge-view][data-layout=unified] .cm-deletedChunk", state="attached")
    assert editor_page.refused == []


def test_completion_offers_an_inputs_values_after_a_comparison(page, live_server):
    _sign_in(page, live_server)
    page.goto(live_server.url("/console/rules/arbitration.yaml"))
    page.wait_for_selector(f"{EDITOR}.is-mounted", state="attached")
    page.locator(".cm-line", has_text="when:").first.click()
    page.keyboard.press("End")
    page.keyboard.type(" and channel == ")
    page.keyboard.press("Control+Space")
    page.wait_for_selector(".cm-tooltip-autocomplete")
    options = page.eval_on_selector_all(".cm-tooltip-autocomplete li .cm-completionLabel", "els => els.map(e => e.textContent)")
    assert options == ['"app"', '"call_centre"', '"sms"']
    page.keyboard.press("Escape")
    page.keyboard.type('channel in ["app", ')
    page.keyboard.press("Control+Space")
    page.wait_for_selector(".cm-tooltip-autocomplete")
    options = page.eval_on_selector_all(".cm-tooltip-autocomplete li .cm-completionLabel", "els => els.map(e => e.textContent)")
    assert '"sms"' in options
