"""The question the console exists for, in a real browser: who moved from growth to win-back, and what would we offer one of them by SMS, and why."""

from __future__ import annotations

import json
import urllib.request
from urllib.parse import urlsplit

from decision_server.customers.records import CustomerRecord


def _api(live_server, path: str, body: dict | None = None, role: str = "analyst") -> dict:
    request = urllib.request.Request(
        live_server.url(path),
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {live_server.keys[role]}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _a_growth_customer_moved_to_win_back(live_server) -> str:
    """Move one demo growth customer to win-back by hand (the demo's nightly moves may hold none)."""
    import sqlalchemy as sa

    with live_server.app.extensions["database"].connection() as conn:
        external = conn.execute(
            sa.text(
                "SELECT c.external_id FROM customers c JOIN customer_state s ON s.customer_id = c.id WHERE s.stage = 'growth' ORDER BY c.id LIMIT 1"
            )
        ).scalar_one()
    moved = _api(
        live_server, f"/api/v1/customers/{external}/stage", {"stage": "win_back", "reason": "browser test"}, role="admin"
    )
    assert moved["to_stage"] == "win_back" if "to_stage" in moved else True
    return external


def test_from_the_heatmap_to_an_sms_offer_and_its_reasons(page, live_server, screenshot):
    external = _a_growth_customer_moved_to_win_back(live_server)
    page.goto(live_server.url("/console/sign-in"))
    page.fill("#api_key", live_server.keys["analyst"])
    with page.expect_navigation():
        page.click("button[type=submit]")
    # Who moved from growth to win-back: the lifecycle heatmap's cell opens the movers list.
    page.goto(live_server.url("/console/lifecycle/movers?from=growth&to=win_back"))
    assert external in page.content()
    with page.expect_navigation():
        page.click(f"a:text-is('{external}')")
    assert urlsplit(page.url).path == f"/console/customers/{external}"
    assert "Win back" in page.inner_text("#customer-header")
    # What would we offer them by SMS, and why: the Decide-now panel (htmx) against the API's preview.
    page.select_option("#decide-now select[name=channel]", "sms")
    page.click("#decide-now button[type=submit]")
    page.wait_for_selector("#decision-preview")
    preview = _api(live_server, "/api/v1/decisions/preview", {"customer_id": external, "channel": "sms"})
    shown = page.eval_on_selector_all("#decision-preview .action", "els => els.map((e) => e.dataset.offer)")
    removed = page.eval_on_selector_all("#removed-offers > li", "els => els.map((e) => e.dataset.offer)")
    assert sorted(shown + removed) == sorted(c["code"] for c in preview["explanation"])
    assert sorted(removed) == sorted(c["code"] for c in preview["explanation"] if not c["eligible"])
    assert "removed by rule" in page.inner_text("#removed-offers")
    screenshot(page, "customer-360")
    # Tabs are links: the back button returns to the timeline.
    page.click(".tabs >> text=Scores")
    assert "tab=scores" in page.url and page.is_visible("#scores")
    page.go_back()
    assert page.is_visible("#timeline")


def test_search_finds_a_customer_by_name(page, live_server):
    with live_server.app.extensions["database"].session() as session:
        customer = session.query(CustomerRecord).filter(CustomerRecord.first_name.is_not(None)).first()
    page.goto(live_server.url("/console/sign-in"))
    page.fill("#api_key", live_server.keys["channel"])
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert urlsplit(page.url).path == "/console/customers"  # a channel key opens no dashboard
    page.fill(".topbar input[name=q]", customer.last_name)
    with page.expect_navigation():
        page.press(".topbar input[name=q]", "Enter")
    assert customer.external_id in page.inner_text("#customer-results") or urlsplit(page.url).path.endswith(customer.external_id)
    assert page.goto(live_server.url("/console/overview")).status == 403
