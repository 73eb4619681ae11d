"""Trace a customer in a real browser: with the high-value threshold at 75 in my draft, a customer whose
value score is in [70, 75) is high under the serving rules and medium under my draft, and VIP early
access (for the high segment) is removed from them by the draft; "why not" answers in one line."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from decision_server.auth import service as auth_service
from decision_server.studio import drafts


@pytest.fixture
def tracer(live_server):
    """An analyst key of this test's own (drafts are per user) with the threshold at 75 in its draft; the draft is dropped after."""
    app = live_server.app
    rulebook, database = app.extensions["rulebook"], app.extensions["database"]
    name = f"trace-{uuid.uuid4().hex[:8]}"
    with database.session(write=True) as session:
        secret = auth_service.create_key(session, name=name, role="analyst").secret
    text = rulebook.current.files["value.yaml"]
    changed = text.replace("value_score >= 70", "value_score >= 75").replace("40 <= value_score < 70", "40 <= value_score < 75")
    assert changed != text
    with database.session(write=True) as session:
        drafts.save_file(session, rulebook.current, f"key:{name}", "value.yaml", changed)
    yield secret
    with database.session(write=True) as session:
        drafts.discard(session, f"key:{name}")


def _a_customer_between_70_and_75(live_server) -> str:
    """A growth or retention customer (VIP early access targets them) whose value score is in [70, 75)."""
    with live_server.app.extensions["database"].connection() as conn:
        return conn.execute(
            sa.text(
                "SELECT c.external_id FROM customers c JOIN customer_state s ON s.customer_id = c.id "
                "WHERE s.value_score >= 70 AND s.value_score < 75 AND s.stage IN ('growth', 'retention') "
                "ORDER BY c.id DESC LIMIT 1"
            )
        ).scalar_one()


def test_a_customer_moves_from_high_to_medium_under_my_draft_and_loses_vip_access(page, live_server, tracer, screenshot):
    customer = _a_customer_between_70_and_75(live_server)
    page.goto(live_server.url("/console/sign-in"))
    page.fill("#api_key", tracer)
    with page.expect_navigation():
        page.click("button[type=submit]")
    page.goto(live_server.url("/console/rules/trace"))
    assert page.is_visible("#trace-empty")
    screenshot(page, "studio-trace-empty")
    page.fill("#trace-form input[name=customer]", customer)
    page.select_option("#trace-form select[name=channel]", "app")
    with page.expect_navigation():
        page.click("#trace-form button[type=submit]")
    page.wait_for_selector("#trace-profile")

    value = "#trace-profile tr[data-field=value_segment]"
    assert "row-changed" in page.get_attribute(value, "class")
    assert page.inner_text(f"{value} td[data-side=serving] .value") == "High"
    assert page.inner_text(f"{value} td[data-side=draft] .value") == "Medium"
    score = "#trace-profile tr[data-field=value_score]"
    assert page.inner_text(f"{score} td[data-side=serving]") == page.inner_text(f"{score} td[data-side=draft]")
    vip = "#trace-offers tr[data-offer=VIP_EARLY_ACCESS]"
    assert "row-changed" in page.get_attribute(vip, "class")
    assert "wrong_segment" in page.inner_text(f"{vip} td[data-side=draft]")
    assert "wrong_segment" not in page.inner_text(f"{vip} td[data-side=serving]")
    serving = live_server.app.extensions["rulebook"].current.id
    assert page.get_attribute("#trace-profile thead a", "href") == f"/console/rules/revisions/{serving}"

    # Why not: htmx swaps the one-line answer in without leaving the page.
    url = page.url
    page.select_option("#why-not-offer", "VIP_EARLY_ACCESS")
    page.click("#trace-why-not button[type=submit]")
    page.wait_for_selector("#why-not-line[data-offer=VIP_EARLY_ACCESS]")
    line = page.inner_text("#why-not-line")
    assert line.startswith("Under your draft, VIP_EARLY_ACCESS is removed by rule") and "wrong_segment" in line
    assert page.url == url
    screenshot(page, "studio-trace")
