"""The console's foundation over HTTP: sign-in, sessions, CSRF, roles on every page, headers, errors."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa

from decision_server.auth import service as auth_service
from decision_server.auth.roles import Role, role_allows
from decision_server.console.pages import PAGES
from decision_server.db import utcnow


def sign_in(client, key: str, next_url: str | None = None):
    """Open the sign-in form (for its token) and post the key, as a browser does."""
    page = client.get("/console/sign-in")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    data = {"api_key": key, "csrf_token": token}
    if next_url:
        data["next"] = next_url
    return client.post("/console/sign-in", data=data)


def csrf_of(client, path: str = "/console/customers") -> str:
    html = client.get(path).get_data(as_text=True)
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', html).group(1)


def test_a_page_without_a_session_goes_to_sign_in_and_back(client, keys):
    response = client.get("/console/customers?q=abc")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/sign-in?next=%2Fconsole%2Fcustomers%3Fq%3Dabc")
    answer = sign_in(client, keys["analyst"], next_url="/console/customers?q=abc")
    assert answer.status_code == 302 and answer.headers["Location"] == "/console/customers?q=abc"
    assert client.get("/console/customers?q=abc").status_code == 200


def test_the_session_cookie_is_http_only_strict_and_scoped(client, keys):
    response = sign_in(client, keys["analyst"])
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("ds_console="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console/" in cookie
    assert "Max-Age=28800" in cookie  # the default eight hours
    assert keys["analyst"] not in cookie


def test_the_key_never_reaches_a_page(client, keys):
    sign_in(client, keys["admin"])
    for entry in PAGES:
        html = client.get(entry.rule and "/console" + entry.rule).get_data(as_text=True)
        assert keys["admin"] not in html
        assert keys["admin"].split("_")[1] not in html  # not even the key's public prefix


def test_a_bad_key_is_refused_on_the_form(client, keys):
    response = sign_in(client, "ds_00000000_nope")
    assert response.status_code == 401
    assert "unknown API key" in response.get_data(as_text=True)
    assert not any(c.startswith("ds_console=") for c in response.headers.getlist("Set-Cookie"))
    assert sign_in(client, "not a key").status_code == 401


def test_sign_in_without_its_form_token_is_refused(client, keys):
    client.get("/console/sign-in")
    response = client.post("/console/sign-in", data={"api_key": keys["admin"]})
    assert response.status_code == 403 and "security token" in response.get_data(as_text=True)


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/api/v1/keys", "/console\\evil"])
def test_sign_in_only_returns_inside_the_console(client, keys, target):
    response = sign_in(client, keys["analyst"], next_url=target)
    assert response.headers["Location"] == "/console/"


def test_home_opens_the_first_page_the_role_may_open(client, keys):
    sign_in(client, keys["channel"])
    assert client.get("/console/").headers["Location"] == "/console/customers"
    client.post("/console/sign-out", data={"csrf_token": csrf_of(client)})
    sign_in(client, keys["analyst"])
    assert client.get("/console/").headers["Location"] == "/console/overview"


def test_sign_out_needs_the_csrf_token_and_ends_the_session_server_side(client, keys):
    sign_in(client, keys["analyst"])
    cookie = client.get_cookie("ds_console", path="/console/").value
    assert client.post("/console/sign-out").status_code == 403  # no token: refused, still signed in
    assert client.post("/console/sign-out", data={"csrf_token": "forged"}).status_code == 403
    assert client.get("/console/customers").status_code == 200
    token = csrf_of(client)
    refused = client.post("/console/sign-out", data={"csrf_token": token}, headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403 and "another site" in refused.get_data(as_text=True)
    ended = client.post("/console/sign-out", headers={"X-CSRF-Token": token, "Origin": "http://localhost"})
    assert ended.status_code == 302
    # The old cookie, replayed, opens nothing: the session ended in the database.
    client.set_cookie("ds_console", cookie, path="/console/")
    again = client.get("/console/customers")
    assert again.status_code == 302 and "reason=session_ended" in again.headers["Location"]


def test_an_htmx_request_without_a_session_is_told_where_to_go(client):
    response = client.get("/console/customers", headers={"HX-Request": "true"})
    assert response.status_code == 204 and response.headers["HX-Redirect"].startswith("/console/sign-in?next=")


def test_revoking_the_key_ends_its_sessions(client, keys, database):
    sign_in(client, keys["editor"])
    assert client.get("/console/customers").status_code == 200
    with database.session(write=True) as session:
        key_id = auth_service.verify_key(session, keys["editor"]).key_id
        auth_service.revoke_key(session, key_id=key_id)
    response = client.get("/console/customers")
    assert response.status_code == 302 and "reason=api_key_revoked" in response.headers["Location"]


def test_a_session_expires(client, keys, database):
    sign_in(client, keys["analyst"])
    with database.session(write=True) as session:
        session.execute(sa.text("UPDATE console_sessions SET expires_at = :t"), {"t": utcnow() - dt.timedelta(seconds=1)})
    response = client.get("/console/customers")
    assert response.status_code == 302 and "reason=session_expired" in response.headers["Location"]
    assert "expired" in client.get(response.headers["Location"]).get_data(as_text=True)


@pytest.mark.parametrize("role", [r.value for r in Role])
def test_every_page_with_every_role(client, keys, role):
    """Each role opens exactly the pages its permissions allow, and the menu shows exactly those."""
    sign_in(client, keys[role])
    allowed = {entry.rule for entry in PAGES if role_allows(Role(role), entry.permission)}
    for entry in PAGES:
        response = client.get("/console" + entry.rule)
        if entry.rule in allowed:
            assert response.status_code == 200, (role, entry.rule, response.get_data(as_text=True)[:500])
        else:
            assert response.status_code == 403, (role, entry.rule)
            assert "may not open this page" in response.get_data(as_text=True)
    menu = client.get("/console" + next(iter(sorted(allowed)))).get_data(as_text=True) if allowed else ""
    for entry in PAGES:
        link = f'href="/console{entry.rule}"'
        assert (link in menu) == (entry.rule in allowed), (role, entry.rule)


def test_pages_carry_a_strict_content_security_policy(client, keys):
    sign_in(client, keys["analyst"])
    response = client.get("/console/overview")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert response.headers["X-Frame-Options"] == "DENY" and response.headers["Cache-Control"] == "no-store"
    assert "<script>" not in response.get_data(as_text=True)  # no inline script a CSP would have to allow


def test_unknown_pages_and_customers_get_console_error_pages(client, keys):
    sign_in(client, keys["analyst"])
    missing = client.get("/console/no/such/page")
    assert missing.status_code == 404 and missing.mimetype == "text/html"
    assert "there is no console page at /console/no/such/page" in missing.get_data(as_text=True)
    unknown = client.get("/console/customers/nobody-here")
    assert unknown.status_code == 404 and "nobody-here" in unknown.get_data(as_text=True)


def test_customer_search_finds_by_name_and_opens_an_exact_id(client, keys, auth):
    for i, (first, email) in enumerate([("Ada", "ada@example.com"), ("Grace", "grace@example.com")]):
        created = client.post(
            "/api/v1/customers", json={"external_id": f"C-{i}", "first_name": first, "email": email}, headers=auth("ingest")
        )
        assert created.status_code == 201, created.get_json()
    sign_in(client, keys["channel"])
    html = client.get("/console/customers?q=grace").get_data(as_text=True)
    assert "C-1" in html and "C-0" not in html
    assert client.get("/console/customers?q=C-0").headers["Location"] == "/console/customers/C-0"
    assert "No customer matches" in client.get("/console/customers?q=zzz").get_data(as_text=True)


def test_decision_statistics_by_channel(client, auth):
    response = client.get("/api/v1/decisions/statistics", headers=auth("analyst"))
    assert response.status_code == 200 and response.get_json()["decisions"] == 0
    assert client.get("/api/v1/decisions/statistics", headers=auth("channel")).status_code == 403
    bad = client.get("/api/v1/decisions/statistics?since=2026-02-01&until=2026-01-01", headers=auth("analyst"))
    assert bad.status_code == 422 and "query.until" in bad.get_json()["errors"]


def test_a_preview_decides_like_a_decision_and_logs_nothing(client, auth):
    assert client.post("/api/v1/customers", json={"external_id": "P1"}, headers=auth("admin")).status_code == 201
    offer = {
        "code": "WELCOME",
        "name": "Welcome",
        "category": "loyalty",
        "business_value": 2,
        "treatments": {"sms": {"text": "Hi {first_name}, welcome"}, "app": {"title": "Welcome", "body": "Hello"}},
    }
    assert client.post("/api/v1/offers", json=offer, headers=auth("admin")).status_code == 201, offer
    request = {"customer_id": "P1", "channel": "sms"}
    preview = client.post("/api/v1/decisions/preview", json=request, headers=auth("analyst"))
    assert preview.status_code == 200, preview.get_json()
    body = preview.get_json()
    assert body["preview"] is True and body["decision_id"] is None
    assert [c["code"] for c in body["explanation"]] == ["WELCOME"]
    assert client.get("/api/v1/decisions", headers=auth("analyst")).get_json()["items"] == []
    decided = client.post("/api/v1/decisions", json=request, headers=auth("channel")).get_json()
    assert [a["offer"]["code"] for a in decided["actions"]] == [a["offer"]["code"] for a in body["actions"]]
    assert len(client.get("/api/v1/decisions", headers=auth("analyst")).get_json()["items"]) == 1
    assert (
        client.post("/api/v1/decisions/preview", json={**request, "channel": "fax"}, headers=auth("analyst")).status_code == 422
    )
    assert client.post("/api/v1/decisions/preview", json=request, headers=auth("ingest")).status_code == 403


def test_the_customer_360_shows_tabs_and_decides_now_with_reasons(client, auth, keys):
    assert (
        client.post("/api/v1/customers", json={"external_id": "V1", "first_name": "Vera"}, headers=auth("admin")).status_code
        == 201
    )
    offer = {
        "code": "WELCOME",
        "name": "Welcome",
        "category": "loyalty",
        "business_value": 2,
        "treatments": {"sms": {"text": "Hi {first_name}, welcome"}},
    }
    assert client.post("/api/v1/offers", json=offer, headers=auth("admin")).status_code == 201
    sign_in(client, keys["channel"])
    for tab in ("timeline", "scores", "loyalty", "segments"):
        page = client.get(f"/console/customers/V1?tab={tab}")
        assert page.status_code == 200 and "Vera" in page.get_data(as_text=True), tab
    assert client.get("/console/customers/V1?tab=nope").status_code == 422
    token = csrf_of(client, "/console/customers/V1")
    assert client.post("/console/customers/V1/decide", data={"channel": "sms"}).status_code == 403  # no CSRF token
    panel = client.post(
        "/console/customers/V1/decide", data={"channel": "sms", "csrf_token": token}, headers={"HX-Request": "true"}
    )
    html = panel.get_data(as_text=True)
    assert panel.status_code == 200 and 'id="decision-preview"' in html and "<html" not in html
    preview = client.post(
        "/api/v1/decisions/preview", json={"customer_id": "V1", "channel": "sms"}, headers=auth("channel")
    ).get_json()
    for action in preview["actions"]:
        assert f'data-offer="{action["offer"]["code"]}"' in html
    for candidate in preview["explanation"]:
        if not candidate["eligible"]:
            assert candidate["code"] in html
            assert all(r["rule"] in html for r in candidate["removed_by"] if r.get("rule")), candidate["removed_by"]
    whole = client.post("/console/customers/V1/decide", data={"channel": "app", "csrf_token": token})
    assert whole.status_code == 200 and "<html" in whole.get_data(as_text=True)  # without JS: the whole page
    assert client.post("/console/customers/V1/decide", data={"channel": "fax", "csrf_token": token}).status_code == 422
    assert client.get("/api/v1/decisions", headers=auth("analyst")).get_json()["items"] == []  # previews are not logged
    client.post("/console/sign-out", data={"csrf_token": token})
    sign_in(client, keys["ingest"])
    page = client.get("/console/customers/V1").get_data(as_text=True)
    assert "may not preview decisions" in page
    token = csrf_of(client, "/console/customers/V1")
    assert client.post("/console/customers/V1/decide", data={"channel": "sms", "csrf_token": token}).status_code == 403


def test_the_stylesheet_closes_every_block():
    """An unclosed @media block once swallowed every later screen's styles on wide windows."""
    from pathlib import Path

    css = re.sub(
        r"/\*.*?\*/", "", (Path(__file__).parents[1] / "decision_server/console/static/console.css").read_text(), flags=re.S
    )
    depth = 0
    for char in css:
        depth += {"{": 1, "}": -1}.get(char, 0)
        assert depth >= 0
    assert depth == 0
