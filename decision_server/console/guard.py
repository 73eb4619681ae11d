"""Who may open a console URL: the session cookie, the route's permission, CSRF and Origin on every write.

A session is a random token in an HttpOnly, SameSite=Strict cookie scoped to /console/, looked
up server-side on each request. Every unsafe request (form or htmx) must carry the session's CSRF
token (form field `csrf_token` or header `X-CSRF-Token`) and, when the browser sends one, an
Origin equal to ours. The sign-in form has no session yet: it uses a double-submit cookie.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from flask import Response, current_app, g, request

from decision_server.auth import sessions
from decision_server.auth.roles import role_allows
from decision_server.console.pages import SIGNED_IN
from decision_server.errors import DecisionServerError, Forbidden, Unauthorized

COOKIE = "ds_console"
SIGN_IN_COOKIE = "ds_sign_in"
COOKIE_PATH = "/console/"
_SAFE = {"GET", "HEAD", "OPTIONS"}
_MISSING = object()

# The pages are our own templates and bundles: nothing inline, nothing from elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


class NotSignedIn(DecisionServerError):
    """No live session: the browser is sent to the sign-in page (with where it was going)."""

    status = 401
    code = "not_signed_in"


def check_request() -> None:
    """Run before every console view: find the session, check the permission, then CSRF and Origin on writes."""
    if request.endpoint in (None, "console.static"):
        return
    handler = current_app.view_functions.get(request.endpoint)
    permission = getattr(handler, "required_permission", _MISSING)
    if permission is _MISSING:
        raise Forbidden("this console page declares no permission", code="route_not_protected")
    if permission is None:  # the sign-in pages
        if request.method not in _SAFE:
            _check_origin()
            _check_token(request.cookies.get(SIGN_IN_COOKIE, ""))
        return
    with current_app.extensions["database"].session() as session:
        try:
            g.console_user = sessions.find_session(session, request.cookies.get(COOKIE, ""))
        except Unauthorized as exc:
            raise NotSignedIn(exc.message, code=exc.code) from None
    if request.method not in _SAFE:
        _check_origin()
        _check_token(g.console_user.csrf_token)
    if permission != SIGNED_IN and not role_allows(g.console_user.role, permission):
        raise Forbidden(f"your role ({g.console_user.role.value}) may not open this page", code="forbidden")


def _check_origin() -> None:
    origin = request.headers.get("Origin")
    if origin is None:
        return
    ours = urlsplit(request.host_url)
    theirs = urlsplit(origin)
    if (theirs.scheme, theirs.netloc) != (ours.scheme, ours.netloc):
        raise Forbidden("this form was sent from another site", code="bad_origin")


def _check_token(expected: str) -> None:
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    if not expected or not sent or not hmac.compare_digest(sent, expected):
        raise Forbidden("the form's security token is missing or stale: reload the page and try again", code="csrf_failed")


def sign_in_token() -> str:
    """Return the double-submit token of the sign-in form (set as a cookie by `secure_response`)."""
    token = request.cookies.get(SIGN_IN_COOKIE) or g.get("new_sign_in_token")
    if not token:
        token = g.new_sign_in_token = secrets.token_urlsafe(32)
    return token


def set_session_cookie(response: Response, token: str, max_age: int) -> None:
    """Give the browser the session token: HttpOnly, SameSite=Strict, console path only, Secure over HTTPS."""
    response.set_cookie(
        COOKIE, token, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=request.is_secure
    )


def clear_session_cookie(response: Response) -> None:
    """Remove the session cookie."""
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=request.is_secure)


def secure_response(response: Response) -> Response:
    """Add the console's security headers; pages hold customer data, so nothing is cached."""
    new_token = g.pop("new_sign_in_token", None)
    if new_token:
        response.set_cookie(
            SIGN_IN_COOKIE, new_token, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=request.is_secure
        )
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response
